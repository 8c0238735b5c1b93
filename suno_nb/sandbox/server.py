"""The sandbox's public handle, :class:`Sandbox` (its command line is in :mod:`.cli`).

The HTTP side is a Starlette app (:mod:`.app`) served by the same server as the receiver,
:class:`suno_nb.server.ServerThread` (uvicorn + httptools on one background thread): the
hosted API's routes for the chosen provider (Bearer auth, HTTP 200 with the error in the
JSON ``code``), and the result files like a public CDN (no auth, HTTP Range for seeking).

Threads: that server thread's event loop also keeps the sandbox's timers and drives its
callback deliveries, and a pool of two worker threads does the blocking work (rendering
audio, POSTing a callback): three threads, all named ``suno-sandbox-*``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from ..contract import Provider, RateLimit, get_provider
from ..credentials import Secret, as_secret
from ..server import Limits, ServerThread
from .app import build_app
from .delivery import CallbackSender, DeliveryAttempt
from .faults import Faults
from .limits import Limiter
from .links import MediaDesk
from .runtime import MAX_WORKERS, Runtime
from .service import Service, Song

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("suno_nb.sandbox")


class _DeliberateDrops(logging.Filter):
    """``Faults(drop_connection=True)`` ends a response without its body on purpose, which
    uvicorn reports as an app error; that report would show as a warning of the receiver's
    (``rx.log()``, its repr) in the same kernel.  Every other report passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


# The sandbox's HTTP server reports here; at ERROR, as the receiver's server does.
_http_log = logging.getLogger("suno_nb.sandbox.http")
_http_log.setLevel(logging.ERROR)
_http_log.addFilter(_DeliberateDrops())

MAX_BODY = 1 << 20  # 1 MiB: far above any valid request
MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_ATTEMPT_COLUMNS = list(DeliveryAttempt.__dataclass_fields__)


class Sandbox:
    """A faithful local emulator of the Suno API, for offline notebooks and tests.

    >>> with Sandbox(delay=0.5) as sb:
    ...     song = sb.create_song(duration=60)
    ...     # point a client at sb.url with sb.api_key

    It emulates one provider's contract (``provider="sunoapi.org"`` by default, or
    ``"kie.ai"``, or a :class:`~suno_nb.contract.Provider`), read from the same table as the
    client: routes, required fields (``fullLyrics`` on sunoapi.org), section rules, and each
    endpoint's refusal codes (replace-section: 422 validation, 402 credits; the others: 400,
    413, 429 credits).  Routes: ``POST`` generate and replace-section, ``GET`` record-info
    and credits (Bearer auth), and unauthenticated ``/files/<id>.mp3``, ``/stream/<id>``,
    ``/files/<id>.png``.  Replace-section takes a generated track (``taskId`` +
    ``audioId``) or, in upload mode (``uploadUrl`` + ``model``), a file this sandbox serves
    or else a synthesized stand-in: nothing is fetched from the internet.

    A task's result is produced ``delay`` seconds after submission (record-info advances
    PENDING -> TEXT_SUCCESS -> FIRST_SUCCESS -> SUCCESS at thirds of ``delay``); a
    ``generate`` task also sends its ``text`` and ``first`` callbacks at those points, so
    ``delay`` sets the gaps (short in tests; ``delay=180`` is about the hosted service's
    pace).  Callbacks are delivered with the seeds' timeout, retries and backoff.
    ``faults`` / :meth:`inject` / :meth:`set_task_faults` make things go wrong on purpose.

    ``rate_limit``: True (default) enforces the provider's documented limit per key
    (sunoapi.org: 20 requests per 10 s, code 430 beyond it; kie.ai: the same with HTTP 429,
    and 3 record-info queries a second per task), each refusal with a ``Retry-After``;
    False serves without limit; a :class:`~suno_nb.contract.RateLimit` or a
    :class:`~suno_nb.sandbox.limits.Limiter` (e.g. on a test's clock) sets another.
    :attr:`rate_limiter` counts what was let through and refused.

    The sandbox key is not a secret (it guards nothing real), but it is kept out of repr
    and logs like a real one, and so is ``hmac_key``; a callback URL's path token is kept
    out of repr, logs and :meth:`delivery_frame` too.

    Threads: the HTTP server's one thread (``suno-sandbox-http``) serves the API, keeps
    every timer and drives callback delivery on its event loop; ``workers`` threads
    (``suno-sandbox-worker_N``, at most 2, the default) render audio and POST callbacks.
    A larger ``workers`` is capped at 2 (it is kept for old callers).
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
        workers: int = MAX_WORKERS,
        provider: str | Provider | None = None,
        rate_limit: bool | RateLimit | Limiter = True,
    ) -> None:
        if delay < 0 or retry_backoff < 0 or callback_timeout <= 0:
            raise ValueError("delay and retry_backoff must be >= 0, callback_timeout > 0")
        if max_attempts < 1 or tracks_per_task < 1 or workers < 1:
            raise ValueError("max_attempts, tracks_per_task and workers must be >= 1")
        if sample_rate not in MP3_RATES:
            raise ValueError(f"sample_rate must be an MP3 rate {MP3_RATES}, got {sample_rate}")
        if faults is not None and not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, got {type(faults).__name__}")
        self.provider: Provider = get_provider(provider)
        limiter: Limiter | None
        if isinstance(rate_limit, Limiter):
            limiter = rate_limit
        elif isinstance(rate_limit, RateLimit):
            limiter = Limiter(rate_limit)
        elif rate_limit is True:
            known = self.provider.rate_limit
            limiter = Limiter(known) if known is not None else None
        elif rate_limit is False:
            limiter = None
        else:
            raise TypeError(
                f"rate_limit must be True, False, a RateLimit or a Limiter, got {rate_limit!r}"
            )
        self.rate_limiter: Limiter | None = limiter
        self._api_key = Secret("sandbox API key", api_key or f"sk-sandbox-{secrets.token_hex(16)}")
        self.host = host
        self._port = port
        self.retry_backoff = retry_backoff
        self.callback_timeout = callback_timeout
        self.max_attempts = max_attempts
        # Like the hosted account's webhook key; the receiver reads the same variable.
        self._hmac_key = as_secret(
            "SUNO_WEBHOOK_HMAC_KEY",
            hmac_key if hmac_key is not None else (os.environ.get("SUNO_WEBHOOK_HMAC_KEY") or None),
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
            provider=self.provider,
        )
        self._media = MediaDesk(self._service)
        self._lock = threading.Lock()
        self._http: ServerThread | None = None
        self._runtime: Runtime | None = None
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
            app = build_app(
                self._service,
                provider=self.provider,
                api_key=self._api_key.text,
                limiter=self.rate_limiter,
                media=self._media,
            )
            http = ServerThread(
                app,
                host=self.host,
                port=self._port,
                name="suno-sandbox-http",
                limits=Limits(max_body=MAX_BODY, request_timeout=30.0),
                log=_http_log,
            )
            http.start()
            # One loop for everything timed: the server's own (see runtime.py).
            runtime = Runtime(http.loop, workers=self._workers)
            self._sender = CallbackSender(
                runtime,
                timeout=self.callback_timeout,
                max_attempts=self.max_attempts,
                retry_backoff=self.retry_backoff,
                hmac_key=self._hmac_key.value if self._hmac_key is not None else None,
            )
            self._http, self._runtime = http, runtime
            self._port = http.port
            self._service.base_url = self.url
            self._service.runtime = runtime
            self._service.sender = self._sender
            self._state = "running"
        log.info("sandbox serving at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and join every thread; safe to call twice.

        Results and callbacks not started yet (and pending retries) are dropped; a callback
        POST under way finishes (up to ``callback_timeout``) and is logged."""
        with self._lock:
            if self._state != "running":
                self._state = "stopped"
                self._stopped.set()
                return
            self._state = "stopped"
            http, runtime = self._http, self._runtime
        assert http is not None and runtime is not None
        grace = self.callback_timeout + 1
        runtime.drain(grace)  # while the loop still runs: sends under way finish on it
        http.stop()  # closes every connection, joins its thread, frees the port
        runtime.close(grace)  # joins the workers
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
        return self._api_key.text

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
        model: str | None = None,
    ) -> Song:
        """A finished original, at once, free and without callback: something to replace
        sections of.  Its record-info is a SUCCESS ``GENERATE`` task with
        ``tracks_per_task`` tracks of ``duration`` seconds, deterministic from the seed and
        title.  Audio is rendered on first request (about 1 s for 120 s).  ``model``: one of
        the provider's models (default: its newest).
        """
        if self._state != "running":
            raise RuntimeError("start the sandbox first (`with Sandbox() as sb:` or sb.start())")
        return self._service.create_song(
            duration=duration,
            title=title,
            tags=tags,
            prompt=prompt,
            model=model or self.provider.models[-1],
        )

    def expire(self, task_id: str) -> None:
        """Let the task's audio, stream and cover links die: they answer 404 from now on
        (the hosted CDN's exact answer is not documented), as after the service's
        retention.  ``POST /api/v1/suno/recovery`` then issues new, working links."""
        self._media.expire(task_id)

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
        runtime = self._runtime
        return True if runtime is None else runtime.wait_idle(timeout)

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
