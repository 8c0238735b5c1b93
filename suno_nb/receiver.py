"""The callback receiver: the ASGI app behind the tunnel, and its one rejection path.

Per request, cheapest checks first: path (404), method (405), IP allow-list (403) — none of
which reads the body — then the body (its size and time are the server's: 413, 408),
content type (415), strict JSON and the callback schema (400), the optional HMAC signature
bound to the body (401).  Judge → record → answer: a rejection's row is committed before its
answer; an accepted delivery is committed by the store's writer before the sender gets
``200 {"code": 200, "msg": "success"}``, and a failure to store answers 503 so that the
sender retries: nothing acknowledged is ever lost.  What was committed reaches handlers
through the store's change feed, not from here.  The callback path token never appears in a
stored row or a log line: paths are masked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import PayloadError, SignatureError
from .events import CallbackEvent
from .payloads import Callback, decode_json, parse_callback
from .payloads.media import RecoveryCallback, WavCallback, media_callback
from .rows import Delivery
from .server import ProtocolError, send_json
from .signing import header, verify
from .store import Store
from .store import media as media_store
from .store.writes import damaged

log = logging.getLogger("suno_nb.receiver")

__all__ = [
    "CALLBACK_PREFIX",
    "STORE_FAILED",
    "Accepted",
    "AllowList",
    "CallbackApp",
    "Rejection",
    "Verifier",
    "mask_path",
]

CALLBACK_PREFIX = "/callback/"
MASKED_PATH = CALLBACK_PREFIX + "…"
FORWARDED_FOR = "X-Forwarded-For"
STORE_FAILED = "the receiver could not store the callback; retry later"


def mask_path(path: str | None, token: str) -> str | None:
    """A request path as it may be stored or logged: never the token, nor a near miss."""
    if path is None:
        return None
    path = path.split("?", 1)[0]
    if token and token in path:
        path = path.replace(token, "…")
    if path.startswith(CALLBACK_PREFIX):
        return MASKED_PATH
    return path[:200]


class AllowList:
    """An IP allow-list of addresses and networks (``"203.0.113.0/24"``)."""

    def __init__(self, entries: Iterable[str]):
        self.networks = tuple(ipaddress.ip_network(e, strict=False) for e in entries)

    def allows(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def __repr__(self) -> str:
        return f"AllowList({[str(n) for n in self.networks]})"


class Verifier:
    """Webhook signatures: HMAC of ``task_id.timestamp``, fresh within ``tolerance``.  The
    signature does not cover the body: the store binds each one to the first body it came
    with (see :meth:`suno_nb.store.Store.record_callback`)."""

    def __init__(self, key: Any, tolerance: float = 300.0) -> None:
        self._key = key
        self.tolerance = tolerance

    def check(self, delivery: Delivery, task_id: str, now: float | None) -> int | str:
        """The verified timestamp, or the reason the signature does not hold."""
        key = self._key.value if hasattr(self._key, "value") else self._key
        try:
            return verify(key, delivery.headers, task_id, now=now, tolerance=self.tolerance)
        except SignatureError as exc:
            return f"signature check failed: {exc.reason}"


@dataclass(frozen=True)
class Accepted:
    """A delivery to store: its callback, and its verified signature's timestamp if signed."""

    callback: Callback | WavCallback | RecoveryCallback
    signature_ts: int | None = None

    def store(self, store: Store, delivery: Delivery) -> Any:
        """Queue it in ``store`` (a WAV/recovery result through :mod:`.store.media`)."""
        if isinstance(self.callback, Callback):
            return store.record_callback(delivery, self.callback, signature_ts=self.signature_ts)
        return media_store.record_result(
            store, delivery, self.callback, signature_ts=self.signature_ts
        )


@dataclass(frozen=True)
class Rejection:
    """Why a delivery is refused: the HTTP status and a reason for the sender."""

    status: int
    reason: str
    task_id: str | None = None


class CallbackApp:
    """The receiver's ASGI app: judge, record, answer (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        token: str,
        verifier: Verifier | None = None,
        allow_list: AllowList | None = None,
        tunnel_active: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.path = CALLBACK_PREFIX + token
        self._token = token
        self._path_bytes = self.path.encode()
        self.verifier = verifier
        self.allow_list = allow_list
        self.tunnel_active = tunnel_active

    # --- judging (shared with replay) ---------------------------------------------------

    def judge(
        self, delivery: Delivery, *, signature_now: float | None = None
    ) -> Accepted | Rejection:
        """What to store (:class:`Accepted`), or the :class:`Rejection` to answer."""
        ctype = header(delivery.headers, "Content-Type") or ""
        if ctype.split(";", 1)[0].strip().lower() != "application/json":
            return Rejection(415, f"Content-Type must be application/json, got {ctype[:100]!r}")
        try:
            doc = decode_json(delivery.body)
            callback = media_callback(doc) or parse_callback(doc)
        except PayloadError as exc:
            return Rejection(400, exc.reason)
        except Exception as exc:  # bad input never becomes a 5xx
            log.warning("body could not be parsed: %s", type(exc).__name__)
            return Rejection(400, f"body could not be parsed ({type(exc).__name__})")
        if not isinstance(callback, Callback):  # WAV/recovery: only for a job we asked for
            unknown = media_store.unknown_job(self.store, callback)
            if unknown is not None:
                return Rejection(400, unknown, callback.task_id)
        if self.verifier is None:
            return Accepted(callback)
        checked = self.verifier.check(delivery, callback.task_id, signature_now)
        if isinstance(checked, str):
            return Rejection(401, checked, callback.task_id)
        return Accepted(callback, checked)

    async def record(self, delivery: Delivery, judged: Accepted | Rejection) -> tuple[int, str]:
        """Store the delivery as judged; return the (status, message) to answer."""
        if isinstance(judged, Rejection):
            await self._rejected(delivery, judged)
            return judged.status, judged.reason
        try:
            event: CallbackEvent = await asyncio.wrap_future(judged.store(self.store, delivery))
        except Exception as exc:  # StoreError, or anything else: never a 200, never a 500
            log.error("store write failed; answering 503 so the sender retries: %s", exc)
            return 503, STORE_FAILED
        log.debug("task %s: %s (%s)", event.task_id, event.verdict, event.state)
        if event.verdict == "unconfirmed":
            log.warning(
                "task %s: a callback under a signature already used with another body was "
                "kept but not applied; asking the service",
                event.task_id,
            )
            return 200, "received; not applied until the service confirms it"
        return 200, "success"

    async def _rejected(self, delivery: Delivery, rejection: Rejection) -> None:
        log.info(
            "rejected delivery from %s: %d %s",
            delivery.remote_addr,
            rejection.status,
            rejection.reason,
        )
        try:
            await asyncio.wrap_future(
                self.store.record_rejection(
                    delivery, rejection.status, rejection.reason, rejection.task_id
                )
            )
        except Exception as exc:
            log.warning("could not record a rejected delivery (%s): %s", rejection.reason, exc)

    # --- the ASGI app -------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        client = scope.get("client")
        delivery = self.delivery(
            client[0] if client else None,
            scope["method"],
            scope["raw_path"].decode("latin-1"),
            _joined((n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]),
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s from %s", delivery.method, delivery.path, delivery.remote_addr)
        early = self._before_body(delivery, scope["raw_path"])
        # The body is read (and dropped, for an early rejection) before any answer: an
        # answer followed by a close with unread input resets the connection under the
        # sender, destroying the answer.  The server bounds its size and time.
        body = await _read_body(receive, keep=early is None)
        if body is None:
            return  # the sender went away mid-body, or the server refused it (and said so)
        if early is not None:
            await self._rejected(delivery, early)
            extra = [(b"allow", b"POST")] if early.status == 405 else None
            await send_json(send, early.status, early.reason, extra=extra)
            return
        delivery = dataclasses.replace(delivery, body=body)
        status, msg = await self.record(delivery, self.judge(delivery))
        await send_json(send, status, msg)

    def _before_body(self, delivery: Delivery, raw_path: bytes) -> Rejection | None:
        if not hmac.compare_digest(raw_path, self._path_bytes):
            return Rejection(404, "not found")
        if delivery.method != "POST":
            return Rejection(405, "method not allowed; callbacks are POSTed")
        if self.allow_list is not None and not self.allow_list.allows(delivery.remote_addr):
            return Rejection(403, f"client address {delivery.remote_addr} is not in the allow-list")
        return None

    def delivery(
        self,
        peer: str | None,
        method: str | None,
        path: str | None,
        headers: Mapping[str, str],
        body: bytes = b"",
    ) -> Delivery:
        """A :class:`Delivery` as stored: path masked; behind the tunnel the client address is
        the rightmost ``X-Forwarded-For`` entry (the one the agent appended)."""
        forwarded = header(headers, FORWARDED_FOR)
        via_tunnel = bool(forwarded) and self.tunnel_active() and _is_loopback(peer)
        remote = forwarded.split(",")[-1].strip() if via_tunnel and forwarded else peer
        return Delivery(
            body=body,
            source="callback",
            remote_addr=remote,
            via_tunnel=via_tunnel,
            method=method,
            path=mask_path(path, self._token),
            headers=dict(headers),
            received_at=time.time(),
        )

    def replay(self, row: Mapping[str, Any]) -> CallbackEvent | Rejection:
        """Judge and store a stored delivery (a ``deliveries`` row) again, as of its arrival
        time; blocking.  A damaged row is a :class:`StoreError` naming it."""
        body = row["body"] if row["body"] is not None else b""
        try:
            headers = json.loads(row["headers"] or "{}")
            if not isinstance(body, bytes) or not isinstance(headers, dict):
                raise TypeError(f"body {type(body).__name__}, headers {type(headers).__name__}")
            if not all(isinstance(v, str) for v in headers.values()):
                raise TypeError("a header value that is not text")
        except (ValueError, TypeError) as exc:
            raise damaged(f"delivery row {row['id']}", exc) from None
        delivery = Delivery(
            body=body,
            source="replay",
            remote_addr=row["remote_addr"],
            via_tunnel=bool(row["via_tunnel"]),
            method=row["method"],
            path=row["path"],
            headers=headers,
            replay_of=row["id"],
        )
        judged = self.judge(delivery, signature_now=row["received_at"])
        if isinstance(judged, Rejection):
            self.store.record_rejection(
                delivery, judged.status, judged.reason, judged.task_id
            ).result()
            return judged
        result: CallbackEvent = judged.store(self.store, delivery).result()
        return result

    def protocol_error(self, error: ProtocolError) -> None:
        """A request the server answered itself: its row, queued (never waited for)."""
        delivery = self.delivery(error.client, error.method, error.path, _joined(error.headers))
        log.info("rejected by the server from %s: %d %s", error.client, error.status, error.reason)
        try:
            future = self.store.record_rejection(delivery, error.status, error.reason)
        except Exception as exc:
            log.warning("could not record a rejected request: %s", exc)
            return
        future.add_done_callback(_log_failed)


async def _read_body(receive: Any, *, keep: bool) -> bytes | None:
    """The whole request body (``b""`` when not kept), or None if the request went away."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        if keep:
            body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


def _log_failed(future: Any) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("could not record a rejected request: %s", exc)


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header pairs as a dict (names title-cased; repeated headers joined with ", ")."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        key = name.title()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
