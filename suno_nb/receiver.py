"""The callback receiver: a minimal ASGI app on :class:`~suno_nb.server.ServerThread`.

Per request, in order: path (404) and method (405); body size (413, by the server);
content type (415); JSON (400); callback schema (400); optional HMAC signature bound to the
body (401); optional IP allow-list (403).  Then the raw delivery and its rows are committed
by the store's single writer and only then the sender gets ``200 {"code": 200, "msg":
"success"}``.  A failed store answers 503 so the sender retries: nothing acknowledged is
ever lost.  Every request that reaches the receiver leaves a row in ``deliveries`` (rejected
ones with their reason; the store keeps the newest N of those).  Handlers are told after
the ack, on the dispatcher's thread.  The callback path token never appears in a stored row
or a log line: paths are masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from .errors import PayloadError, SignatureError, StoreError
from .payloads import Callback, parse_callback
from .server import Limits, ProtocolError, ServerThread, send_json
from .signing import SIGNATURE_HEADER, SignatureMemory, header, signature_key, verify
from .store import Delivery, Outcome, Store
from .store.writer import LoopWaker

log = logging.getLogger(__name__)

MAX_BODY = Limits.max_body_bytes
ACK = json.dumps({"code": 200, "msg": "success"}).encode()
CALLBACK_PREFIX = "/callback/"
MASKED_PATH = CALLBACK_PREFIX + "…"
FORWARDED_FOR = "X-Forwarded-For"
STORE_FAILED = "the receiver could not store the callback; retry later"


@dataclass(frozen=True)
class Verdict:
    """The answer to one delivery, and what was stored."""

    status: int
    reason: str | None
    outcome: Outcome | None = None
    callback: Callback | None = None

    @property
    def body(self) -> bytes:
        if self.status == 200:
            return ACK
        return json.dumps({"code": self.status, "msg": self.reason}).encode()


class AllowList:
    """An IP allow-list of addresses and networks (``"203.0.113.0/24"``)."""

    def __init__(self, entries: Iterable[str]):
        self.networks = tuple(ipaddress.ip_network(e, strict=False) for e in entries)

    def allows(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def __repr__(self) -> str:
        return f"AllowList({[str(n) for n in self.networks]})"


class DeliveryProcessor:
    """Judges and stores one delivery.  Shared by the HTTP path and ``replay()``."""

    def __init__(
        self,
        store: Store,
        *,
        hmac_key: str | bytes | None = None,
        allow_list: AllowList | None = None,
        signature_tolerance: float = 300.0,
    ):
        self.store = store
        self._hmac_key = hmac_key
        self.allow_list = allow_list
        self.signature_tolerance = signature_tolerance
        self.signatures = SignatureMemory(signature_tolerance)
        self._loop_waker: LoopWaker | None = None
        if hmac_key is not None:
            self._remember_recent()

    def _remember_recent(self) -> None:
        """Bind the signatures stored in the last window to their bodies (a restart in the
        middle of a replay attempt must not forget them)."""
        since = time.time() - 2 * self.signature_tolerance
        try:
            rows = self.store.query(
                "SELECT headers, body, received_at FROM deliveries "
                "WHERE received_at >= ? AND verdict != 'rejected' ORDER BY id",
                (since,),
            )
        except StoreError as exc:
            log.warning("could not read recent signatures: %s", exc)
            return
        for row in rows:
            try:
                headers = json.loads(row["headers"] or "{}")
            except ValueError:
                continue
            if header(headers, SIGNATURE_HEADER):
                key = signature_key(headers)
                self.signatures.check(key, bytes(row["body"] or b""), row["received_at"])

    @property
    def signed(self) -> bool:
        return self._hmac_key is not None

    def judge(
        self,
        delivery: Delivery,
        *,
        check_content_type: bool = True,
        signature_now: float | None = None,
    ) -> Callback | tuple[int, str, str | None]:
        """The parsed callback to store, or ``(status, reason, task_id)`` to reject."""
        if check_content_type:
            ctype = header(delivery.headers, "Content-Type") or ""
            if ctype.split(";", 1)[0].strip().lower() != "application/json":
                return 415, f"Content-Type must be application/json, got {ctype[:100]!r}", None
        try:
            callback = parse_callback(delivery.body)
        except PayloadError as exc:
            return 400, exc.reason, None
        except Exception as exc:  # bad input never becomes a 5xx
            log.warning("body could not be parsed: %s", type(exc).__name__)
            return 400, f"body could not be parsed ({type(exc).__name__})", None
        if self._hmac_key is not None:
            try:
                verify(
                    self._hmac_key,
                    delivery.headers,
                    callback.task_id,
                    now=signature_now,
                    tolerance=self.signature_tolerance,
                )
            except SignatureError as exc:
                return 401, f"signature check failed: {exc.reason}", callback.task_id
            signature = signature_key(delivery.headers)
            if not self.signatures.check(signature, delivery.body, signature_now):
                return 401, "signature reused with a different body", callback.task_id
        if self.allow_list is not None and not self.allow_list.allows(delivery.remote_addr):
            address = delivery.remote_addr
            return 403, f"client address {address} is not in the allow-list", callback.task_id
        return callback

    def process(
        self,
        delivery: Delivery,
        *,
        check_content_type: bool = True,
        signature_now: float | None = None,
    ) -> Verdict:
        """Verify ``delivery`` and store it, blocking; return the HTTP answer to give."""
        judged = self.judge(
            delivery, check_content_type=check_content_type, signature_now=signature_now
        )
        if isinstance(judged, tuple):
            return self.reject(delivery, *judged)
        try:
            outcome = self.store.record_callback(delivery, judged)
        except StoreError as exc:
            log.error("store write failed; answering 503 so the sender retries: %s", exc)
            return Verdict(503, STORE_FAILED)
        return Verdict(200, None, outcome, judged)

    async def process_async(self, delivery: Delivery) -> Verdict:
        """:meth:`process` for the event loop: the store's writer commits, the loop waits."""
        judged = self.judge(delivery)
        if isinstance(judged, tuple):
            status, reason, task_id = judged
            await _settle(self.submit_rejection(delivery, status, reason, task_id))
            return Verdict(status, reason)
        try:
            outcome = await self._waker().wrap(self.store.submit_callback(delivery, judged))
        except StoreError as exc:
            log.error("store write failed; answering 503 so the sender retries: %s", exc)
            return Verdict(503, STORE_FAILED)
        return Verdict(200, None, outcome, judged)

    def _waker(self) -> LoopWaker:
        loop = asyncio.get_running_loop()
        if self._loop_waker is None or self._loop_waker.loop is not loop:
            self._loop_waker = LoopWaker(loop)  # a restarted server runs a new loop
        return self._loop_waker

    def submit_rejection(
        self, delivery: Delivery, status: int, reason: str, task_id: str | None = None
    ) -> Future[int] | None:
        """Queue the rejected delivery's row (non-blocking); None if the store refused."""
        log.info("rejected delivery from %s: %d %s", delivery.remote_addr, status, reason)
        try:
            future = self.store.submit_rejection(delivery, status, reason, task_id)
        except StoreError as exc:
            log.warning("could not record a rejected delivery (%s): %s", reason, exc)
            return None
        future.add_done_callback(_log_failed_rejection)
        return future

    def reject(
        self, delivery: Delivery, status: int, reason: str, task_id: str | None = None
    ) -> Verdict:
        """Record a rejection (waiting for its row) and return the answer."""
        future = self.submit_rejection(delivery, status, reason, task_id)
        if future is not None:
            with contextlib.suppress(StoreError):  # logged by the done callback
                future.result()
        return Verdict(status, reason)


def _log_failed_rejection(future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("could not record a rejected delivery: %s", exc)


async def _settle(future: Future | None) -> None:
    """Wait for a row to be committed (so that it is visible once the sender has the answer)."""
    if future is not None:
        with contextlib.suppress(StoreError):  # logged by the done callback
            await asyncio.wrap_future(future)


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


class CallbackServer:
    """The receiver's ASGI app and the server thread that runs it."""

    def __init__(
        self,
        processor: DeliveryProcessor,
        *,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: Limits | None = None,
        on_stored: Callable[[Verdict], None] | None = None,
        tunnel_active: Callable[[], bool] = lambda: False,
    ):
        self.processor = processor
        self.path = CALLBACK_PREFIX + token
        self._token = token
        self._path_bytes = self.path.encode()
        self.host = host
        self.limits = limits = limits or Limits()
        self._on_stored = on_stored
        self.tunnel_active = tunnel_active
        self._inflight = 0
        self._idle = threading.Condition()
        self.http = ServerThread(
            self,
            host=host,
            port=port,
            name="suno_nb-receiver-{port}",
            limits=limits,
            on_protocol_error=self._protocol_error,
        )

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> CallbackServer:
        self.http.start()
        log.info("receiver listening on %s:%d", self.host, self.http.port)
        return self

    def stop(self) -> None:
        """Close every connection, free the port.  Idempotent."""
        if self.http.running:
            self.http.stop()
            log.info("receiver stopped")

    @property
    def port(self) -> int:
        return self.http.port

    @property
    def running(self) -> bool:
        return self.http.running

    @property
    def thread(self) -> threading.Thread | None:
        return self.http.thread

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no stored delivery is between its ack and its dispatch."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def _count(self, delta: int) -> None:
        with self._idle:
            self._inflight += delta
            if self._inflight == 0:
                self._idle.notify_all()

    # --- the ASGI app -------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        method, client = scope["method"], scope.get("client")
        peer, path = client[0] if client else None, scope["raw_path"].decode("latin-1")
        headers = _joined((n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"])
        # The whole body first (the server bounds its size and time), even for a 404: an
        # answer before it, then a close, would reset the connection under the sender.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender went away mid-body (or the server cut it off): no answer
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        known_path = hmac.compare_digest(scope["raw_path"], self._path_bytes)
        # A rejected request's body is not kept (no junk stored).
        kept = bytes(body) if known_path and method == "POST" else b""
        delivery = self._make_delivery(peer, method, path, headers, kept)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s from %s", method, delivery.path, delivery.remote_addr)
        if not known_path:
            await self._answer_rejected(send, delivery, 404, "not found")
            return
        if method != "POST":
            reason = "method not allowed; callbacks are POSTed"
            await self._answer_rejected(send, delivery, 405, reason, allow=True)
            return
        # Counted from before the store's commit until the handlers are queued: the commit
        # is visible to readers before this coroutine resumes, and flush() must not slip
        # into that gap (a reader saw the row, flush() returned, the handler had not run).
        self._count(+1)
        try:
            verdict = await self.processor.process_async(delivery)
            if verdict.outcome is None:
                await send_json(send, verdict.status, verdict.reason or "")
                return
            try:
                await send_json(send, 200, "success")
            finally:
                self._stored(verdict)
        finally:
            self._count(-1)

    async def _answer_rejected(
        self, send: Any, delivery: Delivery, status: int, reason: str, *, allow: bool = False
    ) -> None:
        await _settle(self.processor.submit_rejection(delivery, status, reason))
        # No "Connection: close": the server drops a body left unread (up to its limits), so
        # closing now could reset the connection before the sender reads this answer.
        await send_json(send, status, reason, extra=[(b"allow", b"POST")] if allow else [])

    def _stored(self, verdict: Verdict) -> None:
        if self._on_stored is not None:
            try:
                self._on_stored(verdict)  # queues the event: handlers run on their thread
            except Exception:
                log.exception("notification after a stored delivery failed")

    def _make_delivery(
        self,
        peer: str | None,
        method: str | None,
        path: str | None,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Delivery:
        forwarded = header(headers, FORWARDED_FOR)
        via_tunnel = bool(forwarded) and self.tunnel_active() and _is_loopback(peer)
        # The rightmost X-Forwarded-For entry is the one the tunnel agent added.
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

    def _protocol_error(self, error: ProtocolError) -> Future[int] | None:
        """A request the server answered itself (bad framing, too large, too slow): a row."""
        headers = _joined(error.headers)
        delivery = self._make_delivery(error.client, error.method, error.path, headers, b"")
        # The server answers once this row is committed, as for the app's own rejections.
        return self.processor.submit_rejection(delivery, error.status, error.reason)


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
