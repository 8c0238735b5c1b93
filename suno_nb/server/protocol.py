"""The HTTP/1.1 protocol: uvicorn's httptools protocol with what uvicorn lacks.

A whole-request deadline, header and body limits, plain ``chunked`` only, no upgrades, a
connection cap that sheds the oldest stalled or idle connection, and every error answered
as JSON (with a lingering close) and reported.  llhttp parses every byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("suno_nb.server")

LINGER_S = 2.0  # after an error answer, how long unread input is still drained
LINGER_BYTES = 4 * 1024 * 1024  # and how much of it


@dataclass(frozen=True)
class Limits:
    """The server's limits.  Past ``max_connections`` the oldest stalled or idle connection
    is closed to make room; if every connection is busy, the newcomer gets 503 JSON."""

    max_connections: int = 256
    max_header_bytes: int = 16 * 1024
    max_body: int = 1024 * 1024
    request_timeout: float = 15.0  # whole request (headers + body) must arrive within this
    keepalive: float = 5.0


@dataclass(frozen=True)
class ProtocolError:
    """A request the server answered itself (bad framing, too large, too slow, ...)."""

    status: int
    reason: str
    client: str | None = None
    method: str | None = None
    path: str | None = None  # the raw request target: may hold a secret, mask before use
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    received_at: float = field(default_factory=time.time)


def json_answer(status: int, msg: str) -> bytes:
    """The JSON body every answer uses."""
    return json.dumps({"code": status, "msg": msg}).encode()


class _HeadWithBody:
    """The transport a response is written through: its head waits for the first bytes of
    the body and leaves with them, in one ``send()`` instead of two.

    Every ``send()`` lets go of the GIL, and while the notebook's main thread is busy each
    let-go can cost a switch interval (5 ms) before this thread runs again.  Everything
    else (an interim ``100 Continue``, a HEAD answer, the body's later chunks) passes
    straight through; closing sends what is held first.
    """

    def __init__(self, cycle: Any, transport: asyncio.Transport) -> None:
        self._cycle = cycle
        self._transport = transport
        self._head: bytes | None = None
        self._holding = cycle.scope["method"] != "HEAD"  # a HEAD answer has no body to wait for

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif self._holding and self._cycle.response_started:
            self._head, self._holding = bytes(data), False  # the head: wait for the body
            return
        self._transport.write(data)

    def _flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Stop(Exception):
    """Raised inside a parser callback after the request was answered: stop parsing."""


class StrictProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines, size limits and JSON errors."""

    limits: Limits = Limits()
    report: Callable[[ProtocolError], Future | None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = log  # uvicorn's loggers are never used: no record reaches stderr
        self.access_log = False  # per connection: uvicorn's access_log=False edits a logger
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._in_head = True
        self._answered = False
        self._since = time.monotonic()
        self._body_bytes = 0
        self._dropped = 0

    # --- connection -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # small JSON answers: no Nagle delay
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm_deadline()
        if len(self.connections) > self.limits.max_connections:
            victim = min(
                (c for c in self.connections if c is not self and c._sheddable()),
                key=lambda c: c._since,
                default=None,
            )
            if victim is not None:
                victim._shed()
            else:
                self._reject(503, "too many open connections; retry later", quiet=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _shed(self) -> None:
        """Close this (stalled or idle) connection to make room for a newcomer."""
        if self._answered:
            self.transport.abort()
        else:
            self._reject(503, "closed: too many open connections", quiet=True, linger=False)

    def _sheddable(self) -> bool:
        """Stalled or idle: no request waiting for the app's answer."""
        cycle = self.cycle
        processing = cycle is not None and not cycle.more_body and not cycle.response_complete
        return not processing and not self.transport.is_closing()

    # --- deadline ------------------------------------------------------------------------

    def _arm_deadline(self) -> None:
        if self._deadline is None:
            self._since = time.monotonic()
            self._deadline = self.loop.call_later(
                self.limits.request_timeout, self._deadline_passed
            )

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        quiet = self._in_head and self._head_bytes == 0  # nothing of a request arrived
        self._reject(
            408,
            f"request not received within {self.limits.request_timeout:g} s",
            quiet=quiet,
        )

    # --- answering errors -----------------------------------------------------------------

    def _reject(self, status: int, msg: str, *, quiet: bool = False, linger: bool = True) -> None:
        """Stop reading, report (unless quiet), answer ``status`` as JSON and close.

        If the report returns a future (the receiver's row being committed), the answer
        waits for it, as an answer from the app would."""
        if self._answered or self.transport.is_closing():
            return
        self._answered = True
        self._cancel_deadline()
        self.transport.pause_reading()
        cycle = self.cycle
        if cycle is not None and not self._in_head and cycle.response_started:
            # The app already answered this request (e.g. 404 before reading the body): no
            # second answer, just stop reading the rest.
            self._send_error(status, msg, linger=linger, answer=False)
            return
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app, if waiting for the body, sees a disconnect
            cycle.message_event.set()
        waiter = None if quiet or self.report is None else self._report(status, msg)
        if waiter is None:
            self._send_error(status, msg, linger=linger)
            return
        pending = asyncio.wrap_future(waiter, loop=self.loop)
        timer = self.loop.call_later(5.0, pending.cancel)  # never hold an answer forever

        def answer(done: asyncio.Future) -> None:
            timer.cancel()
            if not done.cancelled():
                done.exception()  # retrieved: the reporter logs its own failures
            self._send_error(status, msg)

        pending.add_done_callback(answer)

    def _send_error(
        self, status: int, msg: str, *, linger: bool = True, answer: bool = True
    ) -> None:
        if self.transport.is_closing():
            return
        if answer:
            body = json_answer(status, msg)
            head = [STATUS_LINE[status]]
            head += [n + b": " + v + b"\r\n" for n, v in self.server_state.default_headers]
            head.append(b"content-type: application/json\r\nconnection: close\r\n")
            head.append(b"content-length: %d\r\n\r\n" % len(body))
            self.transport.write(b"".join(head) + body)
        if linger and self.transport.can_write_eof():
            # A lingering close: FIN after the answer, then read and drop what the client
            # still sends for a moment.  Closing with unread data sends an RST, which can
            # destroy the answer before the client reads it (a 413 mid-upload).
            self.transport.write_eof()
            self.transport.resume_reading()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def _report(self, status: int, msg: str) -> Future | None:
        method = (self.scope or {}).get("method")
        with contextlib.suppress(httptools.HttpParserError, AttributeError):
            method = method or self.parser.get_method().decode("ascii", "replace")
        url = getattr(self, "url", None)
        pairs = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in self.headers or ())
        client = self.client[0] if self.client else None
        path = url.decode("latin-1") if url else None
        error = ProtocolError(status, msg, client, method, path, pairs)
        try:
            waiter = self.report(error)  # type: ignore[misc]
        except Exception:
            log.exception("on_protocol_error raised")
            return None
        return waiter if isinstance(waiter, Future) else None

    def send_400_response(self, msg: str) -> None:
        self._reject(400, msg)

    # --- parsing ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._answered:  # lingering after an error answer: drop, up to a bound
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
            self._arm_deadline()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):
                log.debug("request rejected by a parser callback: %r", exc.__context__)
                self._reject(400, "invalid HTTP request")
            return
        except httptools.HttpParserUpgrade:
            self._reject(400, "protocol upgrades are not supported")
            return
        except httptools.HttpParserError as exc:
            self._reject(400, f"invalid HTTP request: {exc}")
            return
        if self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self._reject(431, f"request headers exceed {self.limits.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._body_bytes = 0
        self._arm_deadline()

    def on_headers_complete(self) -> None:
        self._in_head = False
        limits = self.limits
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > limits.max_header_bytes:
            self._stop(431, f"request headers exceed {limits.max_header_bytes} bytes")
        te = [v for n, v in self.headers if n == b"transfer-encoding"]
        if te and (len(te) > 1 or te[0].strip().lower() != b"chunked"):
            self._stop(400, "only 'Transfer-Encoding: chunked' is supported")
        if self.parser.should_upgrade():
            self._stop(400, "protocol upgrades are not supported")
        length = None
        for n, v in self.headers:
            if n == b"content-length":  # llhttp has checked it is one plain number
                length = int(v)
        if length is not None and length > limits.max_body:
            self._stop(413, f"body of {length} bytes exceeds the {limits.max_body} limit")
        super().on_headers_complete()
        if self.cycle is not None:  # one send per answer (see _HeadWithBody)
            self.cycle.transport = _HeadWithBody(self.cycle, self.transport)  # type: ignore[assignment]

    def _stop(self, status: int, msg: str) -> None:
        self.scope.setdefault("method", self.parser.get_method().decode("ascii", "replace"))
        self._reject(status, msg)
        raise _Stop

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body:
            self._stop(413, f"body exceeds the {self.limits.max_body} byte limit")
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()
