"""The Receiver handle: it holds a store, a server, a tunnel, a poller and the change feed."""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..events import CallbackEvent, CallbackFilter, Change, Feed, Handler, MediaEvent
from ..logbook import Logbook
from ..payloads import RecordInfo
from ..poller import Fetch, Poller
from ..receiver import AllowList, CallbackApp, Rejection, Verifier
from ..rows import MediaSubmission, Submission
from ..server import ServerThread
from ..store import TERMINAL_STATES, Store
from ..store.writes import damaged
from . import media, tunnels, view
from .archiving import Archiver
from .config import TOKEN_META_KEY, ReceiverConfig, TaskResult

if TYPE_CHECKING:  # pandas loads on first use: `import suno_nb` stays light
    import pandas as pd

    from ..master import Master

log = logging.getLogger("suno_nb.session")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,128}")  # what secrets.token_urlsafe() writes


class Receiver:
    """A running callback receiver.  Create it with :func:`~suno_nb.start_receiver`.

    Three threads: the HTTP server's event loop, the store's writer, and the feed's
    dispatcher (handlers, widget updates, the poller's rounds).
    """

    def __init__(self, config: ReceiverConfig, *, client: Any = None) -> None:
        self.config = config
        self.started_at = time.time()  # views default to tasks since then (+ open ones)
        self.feed = Feed()
        self.store = Store(
            config.store,
            on_commit=self.feed.publish,
            signature_window=2 * config.signature_tolerance,
        )
        # takes archived on arrival (rx.archiver.folder), off the dispatcher: archiving.py
        self.archiver = Archiver.for_receiver(self.store, config)
        try:
            token = self.store.get_meta(TOKEN_META_KEY)
            if token is None:
                token = secrets.token_urlsafe(24)  # 192 bits: the path is a capability
                self.store.set_meta(TOKEN_META_KEY, token)
            elif not isinstance(token, str) or not _TOKEN.fullmatch(token):
                raise damaged(f"meta row {TOKEN_META_KEY!r}", "not a callback token")
            self.tunnel: Any = None
            self.fetch: Fetch | None = None
            self.tunnel_note: str | None = None
            self.polling_only = False  # no public URL possible here (Kaggle): see open_tunnel
            key = config.hmac_key
            self.app = CallbackApp(
                self.store,
                token=token,
                verifier=Verifier(key, config.signature_tolerance) if key else None,
                allow_list=AllowList(config.allow_ips) if config.allow_ips is not None else None,
                tunnel_active=lambda: self.tunnel is not None,
            )
            self.server = ServerThread(
                self.app,
                host=config.host,
                port=config.port,
                name="suno_nb-receiver-{port}",
                limits=config.limits,
                on_protocol_error=self.app.protocol_error,
            )
            self.poller = (
                Poller(
                    self.store,
                    self.feed,
                    interval=config.poll_interval,
                    grace=config.poll_grace,
                    request_timeout=config.poll_timeout,
                )
                if config.poll
                else None
            )
            self.logbook = Logbook(secrets=(token, _text(key), _text(config.authtoken)))
            self.server.start()
        except BaseException:
            self.feed.close()
            self.store.close()
            raise
        self.logbook.attach()
        self.feed.subscribe(self._confirm)
        self.feed.subscribe(self.archiver.on_change)
        log.info("receiver listening on %s:%d", config.host, self.server.port)
        self._stopped = False
        if client is not None:
            self.use_client(client)
        if self.poller is not None:
            self.poller.start()

    # --- addresses --------------------------------------------------------------------

    @property
    def local_url(self) -> str:
        """The loopback callback URL (reachable from this machine only)."""
        return f"http://{self.config.host}:{self.server.port}{self.app.path}"

    @property
    def public_url(self) -> str | None:
        """The tunnel's public base URL, or None when local-only."""
        return None if self.tunnel is None else self.tunnel.public_url

    @property
    def url(self) -> str:
        """The URL to give the API as ``callBackUrl``: public when tunnelled, else local."""
        if self.tunnel is not None:
            return str(self.tunnel.public_url).rstrip("/") + self.app.path
        return self.local_url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def mode(self) -> str:
        """``"ngrok"`` or ``"cloudflared"`` while that tunnel is open, else ``"local"``."""
        return str(self.tunnel.kind) if self.tunnel is not None else "local"

    @property
    def running(self) -> bool:
        return not self._stopped and self.server.running

    @property
    def signed(self) -> bool:
        """True when callbacks must carry a valid webhook signature (``hmac_key`` set)."""
        return self.app.verifier is not None

    # --- the tunnel ---------------------------------------------------------------------

    def open_tunnel(self) -> None:
        """Open the tunnel the config asks for (done by ``start_receiver``)."""
        self.tunnel, self.tunnel_note = tunnels.open_for(self.config, self.server.port)
        self.polling_only = tunnels.polling_only(self.config, self.tunnel)
        if self.tunnel is not None:
            self.logbook.add_secret(self.config.authtoken.text if self.config.authtoken else None)

    def retunnel(self, config: ReceiverConfig) -> None:
        """Keep this receiver (port, store, callback path) and replace only its tunnel."""
        tunnels.close(self.tunnel)
        self.tunnel = None
        self.config = config
        self.open_tunnel()

    def tunnel_missing(self) -> bool:
        return tunnels.wanted_but_missing(self.config, self.tunnel)

    # --- submissions and polling ----------------------------------------------------------

    def record_submission(self, submission: Submission, fetch: Fetch | None = None) -> None:
        """Record a submitted task as pending; ``fetch(task_id, timeout)`` polls it if its
        callback does not come (the client hands over its ``get_details``)."""
        self.store.record_submission(submission)
        if fetch is not None:
            self._use_fetch(fetch)
        elif self.poller is not None:
            self.poller.wake()

    def record_job(self, job: MediaSubmission, fetch: Callable[..., Any] | None = None) -> None:
        """Record a client's WAV/recovery job with its task (:mod:`.media`)."""
        media.record_job(self, job, fetch)

    def recover(self, task_id: str, *, client: Any = None) -> str:
        """Ask for new links to ``task_id``'s (expired) tracks; the recovery task's id.
        Its callback updates :meth:`frame` (``audio_url``, ``recovery``, ``audio_error``)."""
        return media.recover(self, task_id, client=client)

    def use_client(self, client: Any) -> None:
        """Poll (and look tasks up) with ``client`` (a :class:`~suno_nb.SunoClient`): the
        tasks and WAV jobs still pending in the store, a kernel restart's included."""
        self._use_fetch(client.poll_fetch)
        media.resume(self, client)

    def _use_fetch(self, fetch: Fetch) -> None:
        self.fetch = fetch
        if self.poller is not None:
            self.poller.fetch = fetch
            self.poller.wake()

    def lookup(self, task_id: str, timeout: float = 10.0) -> RecordInfo | None:
        """The service's record of ``task_id`` (record-info, one request), or None when no
        client is known to ask with (pass ``client=`` to ``start_receiver``).  Its tracks'
        identity is kept in the store and their audio archived (an original outlives its
        service copy: ``rx.archiver.kept_original``)."""
        info = None if self.fetch is None else self.fetch(task_id, timeout)
        if info is not None:
            self.archiver.keep_original(info, task_id)
        return info

    def _confirm(self, change: Change) -> None:
        """An unconfirmed delivery (a reused signature, another body): ask the service."""
        if not (isinstance(change, CallbackEvent) and change.verdict == "unconfirmed"):
            return
        if isinstance(change, MediaEvent):  # a WAV job's poll settles it; recovery: none
            return
        if self.poller is not None and self.poller.fetch is not None:
            self.poller.confirm(change.task_id)
        else:
            log.warning(
                "task %s has an unconfirmed callback and no client to check it with: pass "
                "client= to start_receiver() (or submit with receiver=rx)",
                change.task_id,
            )

    # --- the change feed ----------------------------------------------------------------

    def on_callback(self, fn: Handler, remove: bool = False) -> Handler:
        """Call ``fn(event)`` for every new result (a callback, poll answer or replay that
        changed its task), after it is committed.  Usable as a decorator.

        ``fn`` runs on the receiver's dispatcher thread: it must not print (update widget
        traits instead) and must not wait for the receiver (``rx.wait``).  Exceptions are
        logged (see :meth:`log`).  ``remove=True`` unregisters it.
        """
        wrapper = CallbackFilter(fn)
        if remove:
            self.feed.unsubscribe(wrapper)
        else:
            self.feed.subscribe(wrapper)
        return fn

    def subscribe(self, fn: Callable[[list[Change]], object]) -> None:
        """Call ``fn(changes)`` once per burst of committed changes of any kind (the
        widgets' hook); on the dispatcher thread."""
        self.feed.subscribe(fn, batch=True)

    def unsubscribe(self, fn: Callable[[list[Change]], object]) -> None:
        self.feed.unsubscribe(fn)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything received so far is committed (rejections the server
        answered itself included) and every change has reached the handlers."""
        deadline = time.monotonic() + timeout
        try:
            self.store.submit(lambda conn: None).result(timeout)  # after all queued before it
        except Exception:  # closed or timed out: nothing more will be committed
            return False
        return self.feed.join(max(0.0, deadline - time.monotonic()))

    # --- results ----------------------------------------------------------------------

    def frame(self) -> pd.DataFrame:
        """One row per result track, typed columns (see :mod:`suno_nb.rows`)."""
        from .. import frame

        return frame.frame(self.store)

    def tasks(self) -> pd.DataFrame:
        """One row per task: pending, running, succeeded, failed, unknown or expired."""
        from .. import frame

        return frame.tasks(self.store)

    def deliveries(self) -> pd.DataFrame:
        """Every delivery received, including rejected ones with the reason."""
        from .. import frame

        return frame.deliveries(self.store)

    def session_tasks(self, *, history: bool = False) -> list[dict[str, Any]]:
        """This session's task rows, oldest first: submitted or first seen since
        :attr:`started_at`, plus any still open; ``history=True``: every task."""
        return self.store.tasks_since(0.0 if history else self.started_at, include_open=True)

    def result(self, task_id: str) -> TaskResult | None:
        """The task's final result, or None while it is open or not in the store.  A task
        the poller gave up on (unknown/expired) is final too; its ``error`` says why.
        ``tracks`` are the task's rows of :meth:`frame`, same columns and dtypes."""
        task = self.store.task(task_id)
        if task is None or task["state"] not in TERMINAL_STATES:
            return None
        from .. import frame

        return TaskResult(
            task_id,
            task["state"],
            task["code"],
            task["msg"],
            task["error"] or task["reason"],
            task["source"],
            frame.frame(self.store, task_id),
        )

    def wait(
        self,
        task_id: str,
        timeout: float = 600.0,
        *,
        progress: bool | None = None,
        raise_on_failure: bool = False,
    ) -> TaskResult:
        """Block until ``task_id`` has a final result (callback or poll) and return it.

        Wakes on each commit (no polling).  Shows a progress line in notebooks
        (``progress=None``: only there).  Raises :class:`WaitTimeout` after ``timeout``
        seconds; with ``raise_on_failure`` a failed task raises :class:`TaskFailedError`.
        A task this receiver never recorded is looked up once: if the service does not know
        it either, :class:`UnknownTaskError` is raised at once.
        """
        from .waiting import wait

        return wait(self, task_id, timeout, progress, raise_on_failure)

    def download(
        self, dest: str | os.PathLike[str], *, progress: bool = True, session: Any = None
    ) -> pd.DataFrame:
        """Archive every result track's audio and cover into ``dest/<task_id>/`` (files
        already there are skipped; the archive's files are copied, not fetched again).  The
        hosted service keeps results 14 days."""
        from ..audio import download_results

        folder = self.archiver.folder
        return download_results(
            self.frame(), dest, session=session, progress=progress, archive=folder
        )

    # --- the ledger ---------------------------------------------------------------------

    def rate(
        self, track_id: str, stars: int, note: str | None = None, *, task_id: str | None = None
    ) -> None:
        """Give a result track 1..5 ``stars`` and an optional ``note`` (``rating``/``note``
        in :meth:`frame`; kept in the store).  ``task_id`` only when the id is ambiguous."""
        self.store.rate(track_id, stars, note, task_id=task_id)

    def pick(self, track_id: str, *, task_id: str | None = None) -> None:
        """Mark a result track as the take to keep (``picked`` in :meth:`frame`); one pick
        per task, so picking another take of the task replaces it."""
        self.store.pick(track_id, task_id=task_id)

    def unpick(self, task_id: str) -> None:
        """Clear the pick of ``task_id``."""
        self.store.unpick(task_id)

    def master(
        self,
        picks: list[str] | None = None,
        *,
        crossfade_ms: float | str = "auto",
        match_loudness: bool = True,
    ) -> Master:
        """One song: the original with each picked take's section spliced in, aligned,
        level-matched and crossfaded (how: :func:`suno_nb.master.make_master`).  ``picks``:
        track ids, else the takes picked with :meth:`pick`.  Recorded in the store
        (:meth:`masters`); ``.save(path)`` writes WAV/FLAC without clipping."""
        from ..master import make_master

        return make_master(self, picks, crossfade_ms=crossfade_ms, match_loudness=match_loudness)

    def masters(self) -> pd.DataFrame:
        """Every master made with this store: picks, parameters, saved path and SHA-256."""
        from ..master import masters

        return masters(self.store)

    def listening_tests(self, *, summary: bool = False) -> pd.DataFrame:
        """Blind-listening trials (``audition(rx, blind=True)``), one row each with the hidden
        mapping; ``summary=True``: one row per ABX pair with correct/total, the binomial
        p-value and a verdict (:func:`suno_nb.frame.listening_summary`)."""
        from .. import frame

        trials = frame.listening_tests(self.store)
        return frame.listening_summary(trials) if summary else trials

    # --- replay -----------------------------------------------------------------------

    def replay(self, delivery_id: int) -> CallbackEvent | Rejection:
        """Run a stored delivery through verification and storage again, without the
        network (signatures checked as of its arrival).  Rows already stored are not
        duplicated; handlers run again (event source ``"replay"``)."""
        row = self.store.delivery(delivery_id)
        if row is None:
            raise KeyError(f"no delivery with id {delivery_id}")
        return self.app.replay(row)

    # --- display and log --------------------------------------------------------------

    def log(self, level: str | int = "INFO") -> pd.DataFrame:
        """Recent suno_nb log records (time, level, logger, message), oldest first: what
        background threads had to say (they never print into cells)."""
        number = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
        if not isinstance(number, int):
            raise ValueError(f"level={level!r}: use DEBUG, INFO, WARNING or ERROR")
        return self.logbook.frame(level=number)

    def __repr__(self) -> str:
        return view.text(self)

    def _repr_html_(self) -> str:
        return view.html_repr(self)

    # --- lifecycle --------------------------------------------------------------------

    def stop(self) -> None:
        """Stop polling, close the tunnel, free the port, end the threads.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self.poller is not None:
            self.poller.stop()
        tunnels.close(self.tunnel)
        self.tunnel = None
        self.server.stop()
        self.archiver.stop()  # a download under way finishes and is recorded
        self.store.close()
        self.feed.publish(Change("stopped"))  # the widgets say so at once
        self.feed.close()
        self.logbook.detach()


def _text(secret: Any) -> str | None:
    return None if secret is None else secret.text
