"""The receiver's side of WAV conversions and Recovery Audio (``rx.recover``, ``rx.record_job``).

A job the client asks for is recorded with the original task it belongs to
(:mod:`suno_nb.store.media`), so its callback can be placed: the receiver's app accepts a
WAV or recovery callback only for a job recorded here.  A WAV job also gets the polling
fallback: if no callback has decided it after ``poll_grace`` seconds, its details
(``wav/record-info``) are asked every ``poll_interval`` seconds (doubling after every 10
polls, up to 5 minutes) as timer jobs on the feed's thread, and a final answer is stored
through the same path as a callback (``source="poll"``).  No thread of its own.  Jobs still
pending in the store when a client is handed over (``rx.use_client``: after a kernel
restart, say) are polled the same way.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..client_media import wav_fetch
from ..errors import ApiError, NetworkError, PayloadError, ReceiverError, StoreError
from ..payloads.media import WavRecord
from ..rows import Delivery, MediaSubmission
from ..store import media as media_store

if TYPE_CHECKING:
    from .receiver import Receiver

log = logging.getLogger("suno_nb.session")

WavFetch = Callable[[str, float], WavRecord]
# The WAV jobs each receiver polls (one chain of timer jobs per job).
_POLLED: weakref.WeakKeyDictionary[Receiver, set[str]] = weakref.WeakKeyDictionary()
WAV_INFO_PATH = "/api/v1/wav/record-info"
BACKOFF_AFTER = 10  # polls before the interval doubles (as the task poller does)
MAX_INTERVAL_S = 300.0


def record_job(rx: Receiver, job: MediaSubmission, fetch: WavFetch | None = None) -> None:
    """Record ``job``; with ``fetch`` (WAV details) and polling on, poll it if no callback
    decides it in time."""
    media_store.record_job(rx.store, job)
    # Its callback may have beaten this record (the service answers the request, then
    # converts; a quick one can call back before the client got here): it was refused and
    # kept, so apply it now instead of waiting for the sender's retry.
    early = rx.store.query(
        "SELECT id FROM deliveries WHERE task_id = ? AND verdict = 'rejected' AND status = 400"
        " AND source = 'callback' ORDER BY id",
        (job.job_id,),
    )
    for row in early:
        found = rx.store.delivery(row["id"])
        if found is not None:
            rx.app.replay(found)
    if fetch is not None:
        _schedule(rx, job.job_id, fetch, _grace(rx))


def resume(rx: Receiver, client: Any) -> int:
    """Poll, with ``client``, the WAV jobs of this store still pending and not polled yet
    (asked for before a kernel restart, say); how many."""
    fetch = wav_fetch(client)
    if fetch is None:
        return 0
    pending = [j["job_id"] for j in media_store.jobs(rx.store, "wav") if j["state"] == "pending"]
    return sum(_schedule(rx, job_id, fetch, _grace(rx)) for job_id in pending)


def _grace(rx: Receiver) -> float:
    config = rx.config
    return config.poll_interval if config.poll_grace is None else config.poll_grace


def _schedule(rx: Receiver, job_id: str, fetch: WavFetch, delay: float) -> bool:
    """Plan the first poll of ``job_id`` unless it is polled already (one chain per job)."""
    polled = _POLLED.setdefault(rx, set())
    if not rx.config.poll or job_id in polled:
        return False
    polled.add(job_id)
    rx.feed.call_later(delay, lambda: _poll(rx, job_id, fetch))
    return True


def _poll(rx: Receiver, job_id: str, fetch: WavFetch) -> None:
    """One details poll of a WAV job still pending (feed thread); plans the next."""
    if not rx.running:
        return
    try:
        row = media_store.job(rx.store, job_id)
        if row is None or row["state"] != "pending":
            _POLLED.get(rx, set()).discard(job_id)
            return
        try:
            record = fetch(job_id, rx.config.poll_timeout)
        except (ApiError, NetworkError, PayloadError) as exc:
            log.info("poll of WAV job %s failed (will retry): %s", job_id, exc)
            record = None
        media_store.note_poll(rx.store, job_id)
        if record is not None and record.terminal:
            body = json.dumps({"code": 200, "msg": "success", "data": record.raw}).encode()
            delivery = Delivery(body=body, source="poll", method="GET", path=WAV_INFO_PATH)
            media_store.record_result(rx.store, delivery, record.as_callback()).result()
            log.info("poll: WAV job %s is %s", job_id, record.status)
            _POLLED.get(rx, set()).discard(job_id)
            return
        polls = int(row["poll_count"] or 0) + 1
    except StoreError:
        if not rx.store.closed:
            log.exception("WAV job %s: the store failed; polling stops", job_id)
        return
    interval = min(MAX_INTERVAL_S, rx.config.poll_interval * 2 ** min(polls // BACKOFF_AFTER, 30))
    rx.feed.call_later(interval, lambda: _poll(rx, job_id, fetch))


def client_of(rx: Receiver, client: Any = None) -> Any:
    """``client``, else the client this receiver polls with (``start_receiver(client=)``,
    or the last one that submitted with ``receiver=rx``)."""
    if client is not None:
        return client
    found = getattr(rx.fetch, "__self__", None)  # the client's bound ``poll_fetch``
    if found is None or not hasattr(found, "recover"):
        raise ReceiverError(
            "this receiver knows no client to ask the service with: pass client=... "
            "(a SunoClient), or start_receiver(client=client)"
        )
    return found


def recover(rx: Receiver, task_id: str, *, client: Any = None) -> str:
    """Ask the service for new links to ``task_id``'s tracks, the callback to ``rx.url``;
    the recovery is recorded with ``task_id``.  Returns the recovery task's id."""
    if not rx.running:
        raise ReceiverError("the receiver is stopped: start_receiver() brings it back")
    job_id: str = client_of(rx, client).recover(task_id, callback_url=rx.url, receiver=rx)
    return job_id
