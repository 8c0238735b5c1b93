"""Archive on arrival: every take's audio copied into a folder beside the store.

The service keeps result files 14 days (:data:`suno_nb.contract.RETENTION_DAYS`); a take
worth keeping should not depend on that.  The :class:`Archiver` listens on the receiver's
change feed: when a callback or poll answer commits tracks with an ``audio_url`` (or a
recovery re-issues a track's URL), it queues them; ONE worker thread (``suno_nb-archive``,
started at the first job, ended by :meth:`Archiver.stop`) downloads each into
``<store>.audio/<track_id>.<ext>`` through :func:`suno_nb.audio.archive_track` (temporary
file, renamed when whole and decodable; the audio room's connect timeout and deadline), then
records it in the store's ``archive`` table (``Change("archive", task_id)`` on the feed).
Originals looked up through the receiver (:meth:`Archiver.keep_original`) are kept too: their
identity as a meta row, their audio like a take.

The archive is capped (``archive_max_mb``): once the folder holds that much, nothing new is
archived and ``rx.log()`` says so once; nothing is ever deleted to make room.  Nothing here
prints: failures go to the ``suno_nb.archive`` logger (``rx.log()``).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import audio
from ..errors import AudioError, SunoNbError
from ..events import CallbackEvent, Change
from ..store import archive as rows_archive

if TYPE_CHECKING:
    from ..payloads import RecordInfo
    from ..store import Store
    from .config import ReceiverConfig

log = logging.getLogger("suno_nb.archive")

ARCHIVE_ENV = "SUNO_NB_ARCHIVE"  # "0"/"off"/"false": archive=False unless passed
ORIGINAL_PREFIX = "original:"  # meta rows: original:<task_id>:<track_id> -> identity JSON
_STOP = object()
_QUIET = frozenset({"archive", "ledger", "meta", "stopped", "submission", "poll"})  # no URLs


def archive_default() -> bool:
    """``archive=`` when not passed: on, unless ``$SUNO_NB_ARCHIVE`` says 0/off/false/no."""
    value = os.environ.get(ARCHIVE_ENV, "").strip().lower()
    return value not in ("0", "off", "false", "no")


def archive_folder(store_path: str) -> Path | None:
    """The archive beside a store file (``<store>.audio``); None for ``:memory:``."""
    return None if store_path == ":memory:" else Path(store_path + ".audio")


class Archiver:
    """Downloads committed takes' audio into the archive, off the dispatcher thread."""

    def __init__(self, store: Store, folder: Path | None, *, max_mb: float, enabled: bool) -> None:
        self.store = store
        self.folder = folder  # None (a :memory: store): originals kept, nothing archived
        self.enabled = enabled and folder is not None
        self.max_mb = max_mb
        self.max_bytes = int(max_mb * 1024 * 1024)
        self._lock = threading.Lock()
        self._jobs: queue.Queue[Any] = queue.Queue(maxsize=1000)
        self._pending: set[tuple[str, str, str]] = set()
        self._thread: threading.Thread | None = None
        self._used: int | None = None  # bytes in the folder, counted at the first job
        self._full_said = False
        self._stopped = False

    @classmethod
    def for_receiver(cls, store: Store, config: ReceiverConfig) -> Archiver:
        """The archiver of a receiver's store (``start_receiver(archive=, archive_max_mb=)``)."""
        folder = archive_folder(config.store)
        return cls(store, folder, max_mb=config.archive_max_mb, enabled=config.archive)

    # --- on the dispatcher: what to archive ----------------------------------------------

    def on_change(self, change: Change) -> None:
        """Feed subscriber: queue the tracks a stored result brought (or re-issued)."""
        if not self.enabled or self._stopped or change.kind in _QUIET:
            return
        if isinstance(change, CallbackEvent) and change.verdict != "accepted":
            return
        # a result, or any other write that may have re-issued URLs (a recovery)
        for r in rows_archive.wanted(self.store, change.task_id):
            self.queue(r["task_id"], r["track_id"], r["url"])

    def queue(self, task_id: str, track_id: str, url: str) -> None:
        """Archive ``url`` as ``track_id`` in the background (once per URL while queued)."""
        key = (task_id, track_id, url)
        with self._lock:
            if not self.enabled or self._stopped or not url or key in self._pending:
                return
            try:
                self._jobs.put_nowait(key)
            except queue.Full:  # bounded: the next commit of the task queues it again
                log.warning("archive queue full: track %s not archived for now", track_id)
                return
            self._pending.add(key)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="suno_nb-archive", daemon=True
                )
                self._thread.start()

    def note_gone(self, task_id: str, track_id: str, url: str, status: int, error: str) -> None:
        """A reader's fetch of ``url`` answered 404/410: the track reads ``expired`` (unless
        archived).  Recorded whether archiving is on or not."""
        if status not in rows_archive.GONE_STATUSES:
            return
        try:
            rows_archive.record_failure(self.store, task_id, track_id, url, status, error)
        except SunoNbError as exc:  # a closed store: the reader's own error says enough
            log.debug("could not note %s as gone: %s", track_id, exc)

    # --- originals ---------------------------------------------------------------------

    def keep_original(self, info: RecordInfo, task_id: str) -> None:
        """Store the identity of every track of a looked-up task (ids, title, duration,
        URLs) and archive its audio, so the original outlives the service's copy."""
        for t in info.tracks:
            identity = {
                "task_id": task_id,
                "track_id": t.id,
                "title": t.title,
                "duration": t.duration,
                "audio_url": t.audio_url,
                "stream_audio_url": t.stream_audio_url,
                "image_url": t.image_url,
                "create_time": t.create_time,
                "kept_at": time.time(),
            }
            try:
                self.store.set_meta(
                    f"{ORIGINAL_PREFIX}{task_id}:{t.id}", json.dumps(identity, sort_keys=True)
                )
            except SunoNbError as exc:  # a closed or failing store: the lookup still answers
                log.warning("could not keep original %s: %s", t.id, exc)
                return
            if t.audio_url:
                self.queue(task_id, t.id, t.audio_url)

    def kept_original(self, task_id: str, track_id: str) -> dict[str, Any] | None:
        """The identity of an original kept by :meth:`keep_original`, if any."""
        try:
            value = self.store.get_meta(f"{ORIGINAL_PREFIX}{task_id}:{track_id}")
        except SunoNbError:
            return None
        try:
            found = json.loads(value) if value else None
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    # --- the worker ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            try:
                self._archive(*job)
            except Exception:  # never let one file end the worker; never print
                log.exception("archiving track %s failed", job[1])
            finally:
                with self._lock:
                    self._pending.discard(job)

    def _used_bytes(self) -> int:
        if self._used is None:
            total = 0
            if self.folder is not None and self.folder.is_dir():
                for entry in os.scandir(self.folder):
                    if entry.is_file() and not entry.name.startswith("."):
                        total += entry.stat().st_size
            self._used = total
        return self._used

    def _archive(self, task_id: str, track_id: str, url: str) -> None:
        if self._stopped or self.folder is None:
            return
        if self._used_bytes() >= self.max_bytes:
            full = (
                f"the archive {self.folder} holds {self._used_bytes() / 1048576:.1f} MB, its cap "
                f"(archive_max_mb={self.max_mb:g}): new takes are no longer "
                "archived. Raise archive_max_mb, or move files out of it; nothing was deleted"
            )
            if not self._full_said:  # said once; each take left out says why in its row
                self._full_said = True
                log.warning("%s", full)
            rows_archive.record_failure(self.store, task_id, track_id, url, None, full)
            return
        before = audio.archived_file(self.folder, track_id)
        old = before.stat().st_size if before is not None else 0  # replaced by the new file
        try:
            path, size = audio.archive_track(url, self.folder, track_id)
        except SunoNbError as exc:
            status = exc.status if isinstance(exc, AudioError) else None
            log.warning("could not archive track %s: %s", track_id, exc)
            rows_archive.record_failure(self.store, task_id, track_id, url, status, str(exc))
            return
        self._used = self._used_bytes() + size - old
        log.info("archived track %s (%d bytes)", track_id, size)
        rows_archive.record_archived(self.store, task_id, track_id, url, path.name, size)

    def stop(self, timeout: float | None = None) -> None:
        """Drop what is queued, let a download under way finish (it has the audio room's
        deadline), end the worker.  Idempotent."""
        with self._lock:
            self._stopped = True
            thread = self._thread
            while True:
                try:
                    self._jobs.get_nowait()
                except queue.Empty:
                    break
            self._pending.clear()
            if thread is not None:
                self._jobs.put(_STOP)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
