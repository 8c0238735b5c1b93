"""The sandbox's HTTP face and its public handle, :class:`Sandbox`.

A loopback ``ThreadingHTTPServer`` served from a daemon thread speaks the hosted API's
routes (Bearer auth, HTTP 200 with the error in the JSON ``code``, as the service does) and
serves the result files like a public CDN (no auth, HTTP Range for seeking).
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ..errors import PayloadError
from ..payloads import decode_json
from .delivery import CallbackSender, DeliveryAttempt, Scheduler
from .faults import Faults
from .service import Reply, Service, Song

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("suno_nb.sandbox")

MAX_BODY = 1 << 20  # 1 MiB: far above any valid request
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_FILE_RE = re.compile(r"^/files/([0-9a-fA-F-]{8,64})\.(mp3|png)$")
_STREAM_RE = re.compile(r"^/stream/([0-9a-fA-F-]{8,64})$")
_API_POST = {
    "/api/v1/generate": "generate",
    "/api/v1/generate/replace-section": "replace_section",
}
_API_GET = {"/api/v1/generate/record-info", "/api/v1/generate/credit"}
_ATTEMPT_COLUMNS = list(DeliveryAttempt.__dataclass_fields__)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # False: server_close() must not wait for idle keep-alive connections to end.
    block_on_close = False
    sandbox: Sandbox


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "suno-sandbox/0.1"
    protocol_version = "HTTP/1.1"  # keep-alive and Range for audio players
    timeout = 30  # idle keep-alive sockets give their thread back
    # Headers and body go out in separate writes; without TCP_NODELAY each keep-alive answer
    # waits ~40 ms for the client's delayed ACK (Nagle).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- plumbing ----------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str,
        extra: dict[str, str] | None = None,
        *,
        head: bool = False,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head and self.command != "HEAD":
            # A player that seeks drops its old request mid-body.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)
        log.info("%s %s -> %d", self.command, urlsplit(self.path).path, status)

    def _json(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _reply(self, reply: Reply) -> None:
        self._json(*reply)

    def _authorized(self) -> bool:
        expected = f"Bearer {self.server.sandbox.api_key}".encode()
        given = self.headers.get("Authorization")
        if not given:
            self._json(
                401,
                {
                    "code": 401,
                    "msg": "Unauthorized: send the header 'Authorization: Bearer <API key>'",
                },
            )
            return False
        if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected):
            self._json(401, {"code": 401, "msg": "Unauthorized: invalid API key"})
            return False
        return True

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._json(411, {"code": 411, "msg": "Content-Length is required"})
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True  # the unread body would poison the connection
            self._json(413, {"code": 413, "msg": f"request body larger than {MAX_BODY} bytes"})
            return None
        return self.rfile.read(length) if length else b""

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # answer, log, keep serving
            log.exception("sandbox route %s %s failed", self.command, urlsplit(self.path).path)
            self.close_connection = True
            self._json(500, {"code": 500, "msg": f"sandbox internal error: {type(exc).__name__}"})

    # -- methods -----------------------------------------------------------------------

    def do_POST(self) -> None:
        self._guard(self._post)

    def do_GET(self) -> None:
        self._guard(lambda: self._get(head=False))

    def do_HEAD(self) -> None:
        self._guard(lambda: self._get(head=True))

    def _post(self) -> None:
        path = urlsplit(self.path).path
        raw = self._read_body()
        if raw is None:
            return
        if path.startswith("/api/") and not self._authorized():
            return
        op = _API_POST.get(path)
        if op is None:
            self._not_found_or_405(path)
            return
        try:
            body = decode_json(raw) if raw else None
        except PayloadError as exc:
            self._reply((200, {"code": 400, "msg": f"request body is not valid JSON: {exc}"}))
            return
        self._reply(getattr(self.server.sandbox._service, op)(body))

    def _get(self, *, head: bool) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        sb = self.server.sandbox
        if path.startswith("/api/"):
            if not self._authorized():
                return
            if path == "/api/v1/generate/credit":
                self._reply(sb._service.credit())
            elif path == "/api/v1/generate/record-info":
                self._reply(sb._service.record_info(parse_qs(parts.query).get("taskId", [""])[0]))
            else:
                self._not_found_or_405(path)
            return
        m = _FILE_RE.match(path)
        if m and m.group(2) == "png":
            self._file(sb._service.cover_bytes(m.group(1)), "image/png", head=head)
        elif m or (m := _STREAM_RE.match(path)):
            self._file(sb._service.audio_bytes(m.group(1)), "audio/mpeg", head=head)
        else:
            self._json(404, {"code": 404, "msg": f"no route {path}"})

    def _not_found_or_405(self, path: str) -> None:
        if path in _API_POST or path in _API_GET:
            self._json(405, {"code": 405, "msg": f"method {self.command} not allowed on {path}"})
        else:
            self._json(404, {"code": 404, "msg": f"no route {path}"})

    def _file(self, data: bytes | None, ctype: str, *, head: bool) -> None:
        if data is None:
            self._json(404, {"code": 404, "msg": "no such file (unknown id, or not ready)"})
            return
        total = len(data)
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "public, max-age=86400"}
        spec = self.headers.get("Range")
        # Players probe with "bytes=0-" and seek with later ranges: always 206.  Several
        # ranges at once may be ignored (RFC 9110): the whole file, 200.
        if spec and "," not in spec:
            rng = _parse_range(spec, total)
            if rng is None:
                headers["Content-Range"] = f"bytes */{total}"
                self._send(416, b"", ctype, headers, head=head)
                return
            start, end = rng
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
            self._send(206, data[start : end + 1], ctype, headers, head=head)
            return
        self._send(200, data, ctype, headers, head=head)


def _parse_range(spec: str, total: int) -> tuple[int, int] | None:
    """One ``bytes=`` range -> inclusive (start, end), or None when unsatisfiable."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", spec)
    if not m or (not m.group(1) and not m.group(2)) or total == 0:
        return None
    if not m.group(1):  # suffix: the last N bytes
        n = int(m.group(2))
        return (max(0, total - n), total - 1) if n > 0 else None
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else total - 1
    if start >= total or end < start:
        return None
    return start, min(end, total - 1)


class Sandbox:
    """A faithful local emulator of the Suno API, for offline notebooks and tests.

    >>> with Sandbox(delay=0.5) as sb:
    ...     song = sb.create_song(duration=60)
    ...     # point a client at sb.url with sb.api_key

    Routes: ``POST /api/v1/generate``, ``POST /api/v1/generate/replace-section``,
    ``GET /api/v1/generate/record-info?taskId=``, ``GET /api/v1/generate/credit`` (Bearer
    auth), and unauthenticated ``/files/<id>.mp3``, ``/stream/<id>``, ``/files/<id>.png``.
    A task's result is produced ``delay`` seconds after submission (record-info advances
    PENDING -> TEXT_SUCCESS -> FIRST_SUCCESS -> SUCCESS) and its callback is delivered with
    the seeds' timeout, retries and backoff.  ``faults`` / :meth:`inject` /
    :meth:`set_task_faults` make things go wrong on purpose.

    The sandbox key is not a secret (it guards nothing real), but it is kept out of repr
    and logs like a real one, and so is ``hmac_key``.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        credits: float = 500.0,
        delay: float = 2.0,
        retry_backoff: float = 1.0,
        callback_timeout: float = 10.0,
        max_attempts: int = 3,
        hmac_key: str | bytes | None = None,
        faults: Faults | None = None,
        tracks_per_task: int = 2,
        seed: int = 0,
        sample_rate: int = 22050,
        cost_generate: float = 12.0,
        cost_replace: float = 5.0,
        workers: int = 8,
    ) -> None:
        if delay < 0 or retry_backoff < 0 or callback_timeout <= 0:
            raise ValueError("delay and retry_backoff must be >= 0, callback_timeout > 0")
        if max_attempts < 1 or tracks_per_task < 1 or workers < 1:
            raise ValueError("max_attempts, tracks_per_task and workers must be >= 1")
        if sample_rate not in MP3_RATES:
            raise ValueError(f"sample_rate must be an MP3 rate {MP3_RATES}, got {sample_rate}")
        if faults is not None and not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, got {type(faults).__name__}")
        self._api_key = api_key or f"sk-sandbox-{secrets.token_hex(16)}"
        self.host = host
        self._port = port
        self.retry_backoff = retry_backoff
        self.callback_timeout = callback_timeout
        self.max_attempts = max_attempts
        # Like the hosted account's webhook key; the receiver reads the same variable.
        self._hmac_key = (
            hmac_key if hmac_key is not None else (os.environ.get("SUNO_WEBHOOK_HMAC_KEY") or None)
        )
        self.sample_rate = sample_rate
        self._workers = workers
        self._service = Service(
            credits=credits,
            delay=delay,
            tracks_per_task=tracks_per_task,
            seed=seed,
            sample_rate=sample_rate,
            cost_generate=cost_generate,
            cost_replace=cost_replace,
            faults=faults,
        )
        self._lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._scheduler: Scheduler | None = None
        self._sender: CallbackSender | None = None
        self._stopped = threading.Event()
        self._state = "new"  # new | running | stopped

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind the port and serve on a daemon thread; a no-op when already running."""
        with self._lock:
            if self._state == "running":
                return self
            if self._state == "stopped":
                raise RuntimeError("a stopped Sandbox cannot be restarted; create a new one")
            httpd = _HTTPServer((self.host, self._port), _Handler)
            httpd.sandbox = self
            self._scheduler = Scheduler(self._workers)
            self._sender = CallbackSender(
                self._scheduler,
                timeout=self.callback_timeout,
                max_attempts=self.max_attempts,
                retry_backoff=self.retry_backoff,
                hmac_key=self._hmac_key,
            )
            self._httpd = httpd
            self._port = httpd.server_address[1]
            self._service.base_url = self.url
            self._service.scheduler = self._scheduler
            self._service.sender = self._sender
            # A short poll interval makes stop() quick; idle cost is negligible.
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="suno-sandbox-http",
                daemon=True,
            )
            self._thread.start()
            self._state = "running"
        log.info("sandbox serving at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, drop callbacks not yet sent, join the threads; safe to call twice."""
        with self._lock:
            if self._state != "running":
                self._state = "stopped"
                self._stopped.set()
                return
            self._state = "stopped"
            httpd, thread, scheduler = self._httpd, self._thread, self._scheduler
        assert httpd is not None and thread is not None and scheduler is not None
        httpd.shutdown()  # from this (caller) thread, never from the serving thread
        httpd.server_close()
        thread.join(5)
        scheduler.stop(timeout=self.callback_timeout + 1)
        self._stopped.set()
        log.info("sandbox at %s stopped", self.url)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` is called from another thread or Ctrl-C (for the CLI)."""
        self.start()
        try:
            while not self._stopped.wait(0.5):  # short waits keep Ctrl-C responsive
                pass
        finally:
            self.stop()

    @property
    def running(self) -> bool:
        return self._state == "running"

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`; the requested one before)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the API, e.g. ``http://127.0.0.1:54321``."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self._port}"

    @property
    def api_key(self) -> str:
        """The Bearer key this sandbox accepts (random ``sk-sandbox-...`` unless given)."""
        return self._api_key

    def __repr__(self) -> str:
        state = self._state
        return (
            f"<Sandbox {self.url if state == 'running' else state} "
            f"tasks={len(self._service.tasks())} credits={self.credits:g} "
            f"delay={self._service.delay:g}s>"
        )

    # -- account and faults ------------------------------------------------------------

    @property
    def credits(self) -> float:
        """Remaining credits; assign to top up or drain."""
        with self._service.lock:
            return self._service.credits

    @credits.setter
    def credits(self, value: float) -> None:
        with self._service.lock:
            self._service.credits = float(value)

    @property
    def delay(self) -> float:
        """Seconds from submission to result (for tasks submitted from now on)."""
        return self._service.delay

    @delay.setter
    def delay(self, value: float) -> None:
        if value < 0:
            raise ValueError("delay must be >= 0")
        self._service.delay = float(value)

    @property
    def default_faults(self) -> Faults | None:
        """Faults for every task not covered by :meth:`inject` or :meth:`set_task_faults`."""
        return self._service.default_faults

    @default_faults.setter
    def default_faults(self, faults: Faults | None) -> None:
        if faults is not None and not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, got {type(faults).__name__}")
        self._service.default_faults = faults

    def inject(self, faults: Faults, count: int = 1) -> None:
        """Apply ``faults`` to the next ``count`` tasks submitted over HTTP."""
        self._service.inject(faults, count)

    def set_task_faults(self, task_id: str, faults: Faults) -> None:
        """Apply ``faults`` to a submitted task whose result is not produced yet."""
        self._service.set_task_faults(task_id, faults)

    # -- content -----------------------------------------------------------------------

    def create_song(
        self,
        duration: float = 120.0,
        title: str = "Sandbox Song",
        tags: str = "pop, synth",
        prompt: str = "[Verse] Lights over the harbour\n[Chorus] We sing it again",
        *,
        model: str = "V3_5",
    ) -> Song:
        """A finished original, at once, free and without callback: something to replace
        sections of.  Its record-info is a SUCCESS ``GENERATE`` task with
        ``tracks_per_task`` tracks of ``duration`` seconds, deterministic from the seed and
        title.  Audio is rendered on first request (about 1 s for 120 s).
        """
        if self._state != "running":
            raise RuntimeError("start the sandbox first (`with Sandbox() as sb:` or sb.start())")
        return self._service.create_song(
            duration=duration, title=title, tags=tags, prompt=prompt, model=model
        )

    def record_info(self, task_id: str) -> dict[str, Any]:
        """What ``GET /api/v1/generate/record-info`` returns as ``data`` for ``task_id``."""
        data = self._service.record_data(task_id)
        if data is None:
            raise KeyError(f"no sandbox task {task_id!r}")
        return data

    def tasks(self) -> list[dict[str, Any]]:
        """A summary row per task (id, type, status, parent, track ids, cost)."""
        return self._service.tasks()

    def audio_bytes(self, audio_id: str) -> bytes:
        """The MP3 that ``audio_url`` serves for a track whose result is out."""
        data = self._service.audio_bytes(audio_id)
        if data is None:
            raise KeyError(f"no published sandbox track {audio_id!r}")
        return data

    def samples(self, audio_id: str) -> np.ndarray:
        """A track's float32 samples at ``sample_rate``, before MP3 encoding."""
        return self._service.samples(audio_id)

    # -- deliveries --------------------------------------------------------------------

    def wait_idle(self, timeout: float | None = 30.0) -> bool:
        """Block until every scheduled result and callback attempt (retries included) is
        done; return False if ``timeout`` seconds pass first."""
        scheduler = self._scheduler
        return True if scheduler is None else scheduler.wait_idle(timeout)

    def delivery_log(self) -> list[dict[str, Any]]:
        """Every callback attempt, oldest first: task_id, copy, attempt, url (no query, no
        secret path token),
        callback_type, code, signed, sent_at (UTC), elapsed_s, status, error, outcome."""
        sender = self._sender
        return [] if sender is None else [asdict(a) for a in sender.attempts()]

    def delivery_frame(self) -> pd.DataFrame:
        """:meth:`delivery_log` as a pandas DataFrame (same columns even when empty)."""
        import pandas as pd  # lazy: the sandbox does not need pandas to serve

        return pd.DataFrame(self.delivery_log(), columns=_ATTEMPT_COLUMNS)


def main(argv: list[str] | None = None) -> int:
    """``python -m suno_nb sandbox``: serve a sandbox until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m suno_nb sandbox",
        description="Run a local emulator of the Suno API (replace-section workflow).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="default: a random sk-sandbox-... key")
    parser.add_argument("--hmac-key", default=None, help="sign callbacks with this key")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds until a result")
    parser.add_argument("--credits", type=float, default=500.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--callback-timeout", type=float, default=10.0)
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--retry-backoff", type=float, default=1.0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    sb = Sandbox(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        credits=args.credits,
        delay=args.delay,
        retry_backoff=args.retry_backoff,
        callback_timeout=args.callback_timeout,
        max_attempts=args.max_attempts,
        hmac_key=args.hmac_key,
        seed=args.seed,
    )
    try:
        sb.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    started = time.monotonic()
    try:  # from here on, Ctrl-C at any moment ends in a clean stop
        song = sb.create_song()
        # The sandbox key guards nothing real, so printing it here is fine (and needed).
        print(f"Suno API sandbox at {sb.url}")
        print(f"API key: {sb.api_key}")
        print(f"An original to replace sections of: taskId={song.task_id} audioId={song.audio_id}")
        print(f"  ({song.duration:g} s, {song.audio_url})")
        print("Press Ctrl-C to stop.", flush=True)
        sb.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sb.stop()
    print(f"sandbox stopped after {time.monotonic() - started:.0f} s")
    return 0
