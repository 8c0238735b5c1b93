"""The receiver's ASGI app and the server thread that runs it (see the package docstring)."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Any

from ..server import Limits, ProtocolError, ServerThread, send_json
from ..signing import header
from ..store import Delivery
from .processor import DeliveryProcessor, Verdict, settle

log = logging.getLogger("suno_nb.receiver")

CALLBACK_PREFIX = "/callback/"
MASKED_PATH = CALLBACK_PREFIX + "…"
FORWARDED_FOR = "X-Forwarded-For"


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
        await settle(self.processor.submit_rejection(delivery, status, reason))
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
