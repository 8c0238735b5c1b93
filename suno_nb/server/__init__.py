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
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from email.utils import formatdate
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from .protocol import Limits, ProtocolError, StrictProtocol, json_answer

log = logging.getLogger(__name__)

__all__ = ["Limits", "ProtocolError", "ServerThread", "StrictProtocol", "json_answer", "send_json"]

JSON_HEADERS = [(b"content-type", b"application/json")]
DEFAULT_LIMITS = Limits()


class _Config(Config):
    """uvicorn's Config without its logging set-up (it names a TRACE level globally)."""

    def configure_logging(self) -> None:
        pass


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
        limits: Limits = DEFAULT_LIMITS,
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
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server thread's event loop (while running): schedule work on it with
        ``loop.call_soon_threadsafe``; never block it."""
        if self._loop is None or not self.running:
            raise RuntimeError("the server is not running")
        return self._loop

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
            name = self.name.replace("{port}", str(self._port))  # e.g. "suno_nb-receiver-{port}"
            self._thread = threading.Thread(
                target=self._run, args=(sock, ready), name=name, daemon=True
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
        if thread is not threading.current_thread():  # from the app itself: no self-join
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
            timeout_keep_alive=max(1, round(self.limits.keepalive)),
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
