"""A strict HTTP/1.1 server for one ASGI app, on one background thread: uvicorn as designed.

:class:`ServerThread` runs ``uvicorn.Server.serve()`` (uvicorn's own startup, tick and
graceful shutdown; it installs no signal handlers off the main thread) on its own event loop
in one daemon thread, with uvicorn's own settings and :class:`~.protocol.StrictProtocol` for
what uvicorn lacks (limits, deadlines, JSON errors in request order).  Errors the server
answers itself are reported to ``on_protocol_error`` and never wait for it.  Out of file
descriptors it neither spins nor fails for good (:class:`_Listener`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from .protocol import Limits, ProtocolError, StrictProtocol, json_answer

log = logging.getLogger("suno_nb.server")

__all__ = ["Limits", "ProtocolError", "ServerThread", "json_answer", "json_errors", "send_json"]

GRACE_S = 2.5  # stop(): how long requests being answered get to finish
FD_RESERVE = 64  # descriptors left for the store, pipes, agents and the notebook itself
DEFAULT_LIMITS = Limits()


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
    """One ASGI app served on ``host:port`` from one background daemon thread.  ``log``:
    where uvicorn's own reports (an app that ended a response early, say) go, instead of
    ``suno_nb.server.uvicorn``."""

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "suno_nb-http",
        limits: Limits = DEFAULT_LIMITS,
        on_protocol_error: Callable[[ProtocolError], object] | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.app = app
        self.log = log
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
                    **({"server_log": self.log} if self.log is not None else {}),
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
