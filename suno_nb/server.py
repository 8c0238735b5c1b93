"""A strict HTTP/1.1 server (uvicorn + httptools) on one background thread.

:class:`ServerThread` runs any ASGI 3 app on its own event loop in one daemon thread, never
touching the caller's loop, signal handlers or logging configuration.  llhttp parses every
byte; uvicorn's httptools protocol is subclassed only for what uvicorn lacks: a whole-request
deadline, header/body limits, plain ``chunked`` only, a connection cap that sheds stalled
connections, JSON error answers reported to ``on_protocol_error``, and no uvicorn logger.
See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

log = logging.getLogger(__name__)

JSON_HEADERS = [(b"content-type", b"application/json")]
LINGER_S = 2.0  # after an error answer, how long unread input is still drained
LINGER_BYTES = 4 * 1024 * 1024  # and how much of it


@dataclass(frozen=True)
class Limits:
    """The server's limits.  Past ``max_connections`` the oldest stalled or idle connection
    is closed to make room; if every connection is busy, the newcomer gets 503 JSON."""

    max_connections: int = 256
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    request_deadline_s: float = 15.0  # whole request (headers + body) must arrive within this
    keepalive_s: float = 5.0


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


class _Config(Config):
    """uvicorn's Config without its logging set-up (it names a TRACE level globally)."""

    def configure_logging(self) -> None:
        pass


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
                self.limits.request_deadline_s, self._deadline_passed
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
            f"request not received within {self.limits.request_deadline_s:g} s",
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

    def _send_error(self, status: int, msg: str, *, linger: bool = True) -> None:
        if self.transport.is_closing():
            return
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
        if length is not None and length > limits.max_body_bytes:
            self._stop(413, f"body of {length} bytes exceeds the {limits.max_body_bytes} limit")
        super().on_headers_complete()

    def _stop(self, status: int, msg: str) -> None:
        self.scope.setdefault("method", self.parser.get_method().decode("ascii", "replace"))
        self._reject(status, msg)
        raise _Stop

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            self._stop(413, f"body exceeds the {self.limits.max_body_bytes} byte limit")
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_deadline()
        self._in_head = True
        self._head_bytes = 0
        super().on_message_complete()


async def send_json(
    send: Any, status: int, msg: str, *, close: bool = False, extra: list | None = None
) -> None:
    """Send a whole ``{"code", "msg"}`` answer through an ASGI ``send``."""
    body = json_answer(status, msg)
    headers = [*JSON_HEADERS, (b"content-length", b"%d" % len(body)), *(extra or ())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _guard(app: Any) -> Any:
    """Wrap ``app``: an exception becomes a logged 500 JSON answer, not uvicorn's text."""

    async def guarded(scope: dict, receive: Any, send: Any) -> None:
        started = False

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, receive, tracking_send)
        except Exception:
            log.exception("the ASGI app raised while answering %s", scope.get("method"))
            if not started:
                await send_json(send, 500, "internal error", close=True)

    return guarded


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
        on_protocol_error: Callable[[ProtocolError], Future | None] | None = None,
    ):
        self.app = app
        self.host = host
        self.name = name
        self.limits = limits
        self.on_protocol_error = on_protocol_error
        self._requested_port = port
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._state = ServerState()

    # --- public ---------------------------------------------------------------------------

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
    def connections(self) -> int:
        """Open connections right now."""
        return len(self._state.connections)

    def start(self) -> ServerThread:
        """Bind, start serving, and return once listening.  Idempotent."""
        with self._lock:
            if self.running:
                return self
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self._requested_port))
                sock.listen(1024)
            except OSError:
                sock.close()
                raise
            self._port = sock.getsockname()[1]
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(sock, ready), name=self.name, daemon=True
            )
            self._thread.start()
            ready.wait()
            if self._error is not None:
                raise self._error
            log.debug("%s listening on %s:%d", self.name, self.host, self._port)
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection (idle keep-alive ones at once), join, free the port.

        Requests already being answered get up to half of ``timeout`` to finish.
        Idempotent."""
        with self._lock:
            thread, loop, stopping = self._thread, self._loop, self._stopping
            self._thread = None
        if thread is None or loop is None or stopping is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop may have ended already
            loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        log.debug("%s stopped", self.name)

    # --- the thread ---------------------------------------------------------------------

    def _config(self) -> Config:
        config = _Config(
            _guard(self.app),
            http=type(
                "Protocol",
                (StrictProtocol,),
                {"limits": self.limits, "report": staticmethod(self.on_protocol_error)},
            ),
            ws="none",
            lifespan="off",
            log_config=None,
            interface="asgi3",
            timeout_keep_alive=max(1, round(self.limits.keepalive_s)),
            server_header=False,
            proxy_headers=False,  # the receiver decides what X-Forwarded-For means
            date_header=False,
        )
        config.load()
        return config

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_loop_exception)  # never asyncio's stderr logger
        try:
            loop.run_until_complete(self._serve(loop, sock, ready))
        except BaseException as exc:
            if not ready.is_set():
                self._error = exc
            else:
                log.exception("%s ended with an error", self.name)
        finally:
            ready.set()
            sock.close()
            loop.close()

    async def _serve(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, ready: threading.Event
    ) -> None:
        config = self._config()
        state = self._state = ServerState()
        self._stopping = asyncio.Event()
        self._loop = loop

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state={}, _loop=loop
            )

        server = await loop.create_server(protocol, sock=sock, backlog=1024)
        ticker = loop.create_task(_date_ticker(state))
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            ticker.cancel()
            server.close()
            await self._close_connections(state, loop)
            await server.wait_closed()

    async def _close_connections(self, state: ServerState, loop: Any) -> None:
        for conn in list(state.connections):
            conn.shutdown()  # idle: closed now; answering: closed after its answer
            if conn._answered:
                conn.transport.close()  # answered an error, lingering
            cycle = conn.cycle
            if cycle is not None and cycle.more_body and not cycle.response_complete:
                conn.transport.close()  # still receiving the request: drop it
        deadline = loop.time() + 2.5
        while (state.connections or state.tasks) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(state.connections):
            conn.transport.abort()
        for task in list(state.tasks):
            task.cancel()
        if state.tasks:
            await asyncio.wait(list(state.tasks), timeout=1.0)

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port is not None else "unbound"
        return f"<ServerThread {self.name} {where} {'running' if self.running else 'stopped'}>"


async def _date_ticker(state: ServerState) -> None:
    """The ``Date`` header every answer carries, formatted once a second."""
    while True:
        date = formatdate(time.time(), usegmt=True).encode()
        state.default_headers = [(b"date", date), (b"server", b"suno_nb")]
        await asyncio.sleep(1.0)


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """The loop's exception handler: to our logger (e.g. accept() out of file descriptors)."""
    exc = context.get("exception")
    log.warning("event loop: %s", context.get("message"), exc_info=exc)
