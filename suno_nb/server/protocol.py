"""The HTTP/1.1 protocol: uvicorn's httptools protocol with what uvicorn lacks.

Through uvicorn's public parser callbacks only: a whole-request deadline (408); a cap on
request line + headers that counts chunked trailers too, and a cap on everything that is not
body (head, trailers, chunk framing) checked as bytes arrive, so even one endless header line
is bounded (431); a body cap (413); one plain ``chunked``; exactly one ``Host`` on HTTP/1.1;
no upgrades (400); a connection cap that sheds stalled connections first (503).  Errors are
answered as JSON with a lingering close, and reported to ``report`` (never waited for).
Answers go out, and are reported, in request order: an error found while an earlier
pipelined request is still being answered waits for that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("suno_nb.server")
# uvicorn's own messages ("Invalid HTTP request received.") go to a child of ours that keeps
# errors only: every rejection is reported (and stored) by us already.
_uvicorn_log = logging.getLogger("suno_nb.server.uvicorn")
_uvicorn_log.setLevel(logging.ERROR)

LINGER_S = 2.0  # after an error answer, how long unread input is still drained
LINGER_BYTES = 4 * 1024 * 1024  # and how much of it
FRAMING_BYTES = 64 * 1024  # chunk-size lines a request may spend beyond head and trailers


@dataclass(frozen=True)
class Limits:
    """The server's limits (the receiver's options of the same names)."""

    max_body: int = 1024 * 1024  # bytes per request body (413)
    max_header_bytes: int = 16 * 1024  # request line + headers + trailers (431)
    request_timeout: float = 15.0  # seconds for the whole request to arrive (408)
    keepalive: float = 5.0  # seconds an idle keep-alive connection stays open
    max_connections: int = 256  # open at once; past it stalled/idle ones are shed (503)


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


class _Reject(Exception):
    """Raised in a parser callback: llhttp stops, uvicorn calls send_400_response()."""


class StrictProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines, limits and JSON errors (see module)."""

    limits: Limits = Limits()
    report: Callable[[ProtocolError], object] | None = None
    live: set[StrictProtocol]  # this server's connections, oldest first by _since
    max_live: int = Limits().max_connections  # limits.max_connections, or fewer (see start())
    server_log: logging.Logger = _uvicorn_log  # where uvicorn's own reports go

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = self.server_log  # never uvicorn's loggers: no record reaches stderr
        self.access_log = False  # per connection (the config option edits a global logger)
        self._sock: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._since = time.monotonic()
        self._receiving = False  # a request has begun and not fully arrived
        self._seen_bytes = False
        self._counted = False  # the request being received has reached the app
        self._started = 0  # requests handed to the app (pipelined ones included)
        self._done = 0  # answers completed (always in request order)
        self._current = 0  # the request an error answer belongs to
        self._error: tuple[int, str] | None = None
        self._answered_error = False
        self._report_due = False
        self._linger = True
        self._dropped = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head = 0
        self._body = 0
        self._wire = 0  # bytes of the current request received so far

    # --- connection -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._sock = transport
        self._arm()
        live = self.live
        live.add(self)
        if len(live) > self.max_live:
            idle = [c for c in live if c is not self and c._sheddable()]
            if idle:
                min(idle, key=lambda c: c._since)._shed("closed: too many open connections")
            else:
                self._shed("too many open connections; retry later")

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        self._disarm()
        super().connection_lost(exc)

    def _sheddable(self) -> bool:
        """Stalled, idle or lingering: no request of it is waiting for the app's answer."""
        return self._answered_error or self._receiving or self._done == self._started

    def _shed(self, reason: str) -> None:
        """Close now to make room (503 if a request was under way), without lingering."""
        self.live.discard(self)
        if self._sock is None or self._sock.is_closing():
            return
        if not self._answered_error and self._seen_bytes:
            self._fail(503, reason, quiet=True, linger=False)
        else:
            self._answered_error = True
            self._disarm()
            self._sock.close()

    def shutdown(self) -> None:
        if self._receiving or self._answered_error or self._sock is None:
            if self._sock is not None:
                self._sock.close()  # a stalled request is never answered by a stopping server
            return
        super().shutdown()

    # --- deadline -----------------------------------------------------------------------

    def _arm(self) -> None:
        if self._timer is None:
            self._since = time.monotonic()
            self._timer = self.loop.call_later(self.limits.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._receiving or self._done == self._started:
            quiet = not self._seen_bytes  # opened and never sent a byte: nothing to record
            timeout = self.limits.request_timeout
            self._fail(408, f"request not received within {timeout:g} s", quiet=quiet)

    # --- errors -------------------------------------------------------------------------

    def _reject(self, status: int, reason: str) -> None:
        """From a parser callback: remember the answer and stop the parser."""
        self._error = (status, reason)
        raise _Reject(reason)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's hook for anything the parser refused (ours included)."""
        status, reason = self._error or (400, "invalid HTTP request")
        self._fail(status, reason)

    def _fail(self, status: int, reason: str, *, quiet: bool = False, linger: bool = True) -> None:
        """Report, then answer ``status`` as JSON and close.  Answers go out in request
        order: while an earlier pipelined request is still being answered, the error waits
        (reading stops meanwhile).  A request the app has answered already gets no second
        answer."""
        if self._answered_error or self._sock is None or self._sock.is_closing():
            return
        self._answered_error = True
        self._disarm()
        self._error = (status, reason)
        self._report_due = not quiet and self.report is not None
        self._linger = linger
        self._current = self._started if (self._receiving and self._counted) else self._started + 1
        if self._done >= self._current:  # the app answered this request already: no answer
            if self._report_due:
                self._report(status, reason)
            self._error, self._report_due = None, False
            self._write_error()
        elif self._done < self._current - 1 and linger:
            self._sock.pause_reading()  # see on_response_complete
        else:
            self._write_error()

    def _write_error(self) -> None:
        """Write the error answer (if any: see :meth:`_fail`) and close, lingering."""
        sock = self._sock
        if self._report_due and self._error is not None:  # recorded in request order too
            self._report_due = False
            self._report(*self._error)
        if sock is None or sock.is_closing():
            return
        if self._error is not None:
            status, reason = self._error
            body = json_answer(status, reason)
            head = (
                f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n"
                "content-type: application/json\r\nconnection: close\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            )
            sock.write(head.encode("ascii") + body)
        if self._linger and sock.can_write_eof():
            # A lingering close: FIN after the answer, then read and drop what the client still
            # sends for a moment; closing with unread data would send an RST, which can destroy
            # the answer before the client reads it (a 413 mid-upload).
            sock.write_eof()
            sock.resume_reading()
            self.loop.call_later(LINGER_S, sock.close)
        else:
            sock.close()

    def _report(self, status: int, reason: str) -> None:
        method = None
        with contextlib.suppress(Exception):  # the parser had not read a method yet
            method = self.parser.get_method().decode("ascii", "replace")
        error = ProtocolError(
            status,
            reason,
            self.client[0] if self.client else None,
            method,
            self._url.decode("latin-1") or None,
            tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in self._headers),
        )
        try:
            self.report(error)  # type: ignore[misc]
        except Exception:
            log.exception("on_protocol_error raised")

    # --- data and parser callbacks ------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._answered_error:  # lingering after an error answer: drop, up to a bound
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES and self._sock is not None:
                self._sock.close()
            return
        self._seen_bytes = True
        self._arm()
        self._wire += len(data)
        super().data_received(data)
        # What is not body is head, trailers and chunk framing: bounded even while the
        # parser is still buffering one endless header or trailer line of it.
        limit = 2 * self.limits.max_header_bytes + FRAMING_BYTES
        if self._receiving and not self._answered_error and self._wire - self._body > limit:
            self._fail(431, f"request headers and trailers exceed {limit} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()
        self._receiving, self._counted = True, False
        self._url, self._headers, self._head, self._body, self._wire = b"", [], 0, 0, 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self._url += url
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # chunked trailers arrive here too
        self._headers.append((name.lower(), value))
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._head += size
        if self._head > self.limits.max_header_bytes:
            self._reject(431, f"request headers exceed {self.limits.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        names = [n for n, _ in self._headers]
        te = [v for n, v in self._headers if n == b"transfer-encoding"]
        if te and (len(te) > 1 or te[0].strip().lower() != b"chunked"):
            self._reject(400, "only 'Transfer-Encoding: chunked' is supported")
        if self.parser.should_upgrade():
            self._reject(400, "protocol upgrades are not supported")
        if self.parser.get_http_version() == "1.1" and names.count(b"host") != 1:
            self._reject(400, "an HTTP/1.1 request needs exactly one Host header")
        for name, value in self._headers:
            if name == b"content-length" and int(value) > self.limits.max_body:
                limit = self.limits.max_body
                self._reject(413, f"body of {int(value)} bytes exceeds the {limit} byte limit")
        super().on_headers_complete()
        self._started += 1
        self._counted = True

    def on_body(self, body: bytes) -> None:
        self._body += len(body)
        if self._body > self.limits.max_body:
            self._reject(413, f"body exceeds the {self.limits.max_body} byte limit")
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._receiving = False
        self._disarm()

    def on_response_complete(self) -> None:
        self._done += 1
        super().on_response_complete()
        if self._answered_error and self._done == self._current - 1:
            self._write_error()  # the error that waited for the earlier answers
