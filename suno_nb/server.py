"""A strict HTTP/1.1 server for one ASGI app, on one background thread: uvicorn as designed.

:class:`ServerThread` runs ``uvicorn.Server.serve()`` (uvicorn's own startup, tick and
graceful shutdown; it installs no signal handlers off the main thread) on its own event loop
in one daemon thread.  uvicorn's httptools protocol (llhttp parses every byte) is subclassed,
through its public parser callbacks only, for what uvicorn lacks: a whole-request deadline
(408), a cap on header bytes that counts chunked trailers too (431), a body cap (413), one
plain ``chunked`` transfer coding, exactly one ``Host`` on HTTP/1.1 (400), a connection cap
that sheds stalled connections first (503), and JSON error answers.  An error found while an
earlier pipelined request is still being answered waits for that answer.  Errors the server
answers itself are reported to ``on_protocol_error`` and never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("suno_nb.server")
# uvicorn's own messages ("Invalid HTTP request received.") go to a child of ours that keeps
# errors only: every rejection is reported (and stored) by us already.
_uvicorn_log = logging.getLogger("suno_nb.server.uvicorn")
_uvicorn_log.setLevel(logging.ERROR)

__all__ = ["Limits", "ProtocolError", "ServerThread", "json_answer", "send_json"]

LINGER_S = 2.0  # after an error answer, how long unread input is still drained
LINGER_BYTES = 4 * 1024 * 1024  # and how much of it
GRACE_S = 2.5  # stop(): how long requests being answered get to finish
FD_RESERVE = 64  # descriptors left for the store, pipes, agents and the notebook itself
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


async def send_json(send: Any, status: int, msg: str, *, extra: list | None = None) -> None:
    """Send a whole ``{"code", "msg"}`` answer through an ASGI ``send``."""
    body = json_answer(status, msg)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        *(extra or ()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def json_errors(app: Any) -> Any:
    """ASGI middleware: an exception in ``app`` becomes a logged 500 JSON answer (uvicorn's
    own would be plain text) — or, if the answer had begun, a closed connection."""

    async def guarded(scope: dict, receive: Any, send: Any) -> None:
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except Exception:
            log.exception("the app raised while answering %s", scope.get("method"))
            if not started:
                await send_json(send, 500, "internal error", extra=[(b"connection", b"close")])
            else:
                raise

    return guarded


class _Reject(Exception):
    """Raised in a parser callback: llhttp stops, uvicorn calls send_400_response()."""


class StrictProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines, limits and JSON errors (see module)."""

    limits: Limits = Limits()
    report: Callable[[ProtocolError], object] | None = None
    live: set[StrictProtocol]  # this server's connections, oldest first by _since
    max_live: int = Limits().max_connections  # limits.max_connections, or fewer (see start())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logger = _uvicorn_log  # never uvicorn's loggers: no record reaches stderr
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


class _Config(uvicorn.Config):
    """uvicorn's Config, minus its logging set-up: that names a TRACE level and edits
    uvicorn's loggers, process-wide changes a library must not make."""

    def configure_logging(self) -> None:
        pass


class _Server(uvicorn.Server):
    """uvicorn's Server, telling the starting thread when it listens, and woken at once by
    :meth:`exit` instead of at its next 0.1 s tick (each stop would otherwise wait for it)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        await super().startup(sockets)
        self.ready.set()

    async def main_loop(self) -> None:
        """uvicorn's tick loop (``on_tick`` every 0.1 s), with an interruptible wait."""
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            assert self._wake is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    def exit(self) -> None:
        """From any thread: shut down (uvicorn's ``should_exit``), now rather than at the
        next tick."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(wake.set)


class ServerThread:
    """One ASGI app served on ``host:port`` from one background daemon thread."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "suno_nb-http",
        limits: Limits = Limits(),
        on_protocol_error: Callable[[ProtocolError], object] | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.name = name
        self.limits = limits
        self.on_protocol_error = on_protocol_error
        self._requested_port = port
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: _Server | None = None
        self._live: set[StrictProtocol] = set()
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The bound port (the last one, once stopped)."""
        if self._port is None:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server thread's event loop (while running): schedule work on it with
        ``loop.call_soon_threadsafe``; never block it."""
        if self._loop is None or not self.running:
            raise RuntimeError("the server is not running")
        return self._loop

    @property
    def connections(self) -> int:
        """Open connections right now."""
        return len(self._live)

    def start(self) -> ServerThread:
        """Bind, start serving, and return once listening.  Idempotent."""
        with self._lock:
            if self.running:
                return self
            # proto=TCP: asyncio turns Nagle off only on sockets that say they are TCP, and a
            # JSON answer written as head + body would otherwise wait for a delayed ACK (40 ms).
            sock = _Listener(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self._requested_port))
            except OSError:
                sock.close()
                raise
            self._port = sock.getsockname()[1]
            protocol = type(
                "Protocol",
                (StrictProtocol,),
                {
                    "limits": self.limits,
                    "report": self.on_protocol_error and staticmethod(self.on_protocol_error),
                    "live": self._live,
                    "max_live": _connection_cap(self.limits.max_connections),
                },
            )
            config = _Config(
                json_errors(self.app),
                http=protocol,
                ws="none",
                lifespan="off",
                log_config=None,
                interface="asgi3",
                timeout_keep_alive=max(1, round(self.limits.keepalive)),
                timeout_graceful_shutdown=max(1, round(GRACE_S)),
                # asyncio (3.11) retries accept() once per backlog slot when it runs out of
                # descriptors: a short queue keeps that burst small.  Plenty for callbacks.
                backlog=128,
                server_header=False,
                proxy_headers=False,  # the receiver decides what X-Forwarded-For means
            )
            server = self._server = _Server(config)
            name = self.name.replace("{port}", str(self._port))
            self._thread = threading.Thread(
                target=self._run, args=(server, sock), name=name, daemon=True
            )
            self._thread.start()
            while not server.ready.wait(0.05):
                if not self._thread.is_alive():
                    raise OSError(f"{self.name} could not start serving on port {self._port}")
            return self

    def _run(self, server: _Server, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_LoopErrors().handle)  # never asyncio's stderr logger
        self._loop = loop
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException:
            log.exception("%s ended with an error", self.name)
        finally:
            sock.close()
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close idle and stalled connections at once, let answers being
        sent finish (a moment), join, free the port.  Idempotent."""
        with self._lock:
            thread, server = self._thread, self._server
            self._thread = None
        if thread is None or server is None:
            return
        server.exit()
        if thread is not threading.current_thread():
            thread.join(timeout)

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port is not None else "unbound"
        return f"<ServerThread {self.name} {where} {'running' if self.running else 'stopped'}>"


class _Listener(socket.socket):
    """The listening socket.  Out of file descriptors, ``accept()`` would fail while the
    socket stays readable: asyncio (3.11) then retries in a burst per queued connection and
    the loop spins.  Instead a spare descriptor, kept for the purpose, is freed to accept the
    newcomer and close it at once (it may retry), so the queue drains and the loop idles
    until descriptors are free again; it is said in the log once a minute."""

    _warned = 0.0

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._spare: int | None = _open_spare()

    def accept(self) -> tuple[socket.socket, Any]:
        try:
            return super().accept()
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            now = time.monotonic()
            if now - self._warned > 60.0:
                self._warned = now
                log.warning("out of file descriptors: refusing new connections until some close")
            if self._spare is not None:
                os.close(self._spare)
                with contextlib.suppress(OSError):
                    super().accept()[0].close()
                self._spare = _open_spare()
            raise BlockingIOError(errno.EAGAIN, "no descriptor for a new connection") from None

    def close(self) -> None:
        if self._spare is not None:
            with contextlib.suppress(OSError):
                os.close(self._spare)
            self._spare = None
        super().close()


def _open_spare() -> int | None:
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


def _connection_cap(wanted: int) -> int:
    """``wanted``, or fewer when this process may open fewer files: a new connection past
    the cap sheds a stalled one instead of running the process out of descriptors."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        in_use = len(os.listdir("/proc/self/fd"))
    except (ImportError, OSError, ValueError):
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    cap = max(8, soft - in_use - FD_RESERVE)
    if cap < wanted:
        log.info(
            "at most %d connections: the process may open %d files (%d open)", cap, soft, in_use
        )
    return min(wanted, cap)


class _LoopErrors:
    """The loop's exception handler: our logger, at most once per interval per message
    (running out of file descriptors makes asyncio retry accept() every second)."""

    INTERVAL_S = 60.0

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message"))
        now = time.monotonic()
        if now - self._last.get(message, -self.INTERVAL_S) < self.INTERVAL_S:
            return
        self._last[message] = now
        log.warning("event loop: %s", message, exc_info=context.get("exception"))
