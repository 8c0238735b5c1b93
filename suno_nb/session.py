"""The Receiver handle and ``start_receiver()``: one receiver per process.

``start_receiver()`` wires the store, the HTTP server thread, the dispatcher, the optional
ngrok tunnel and the polling fallback.  Calling it again (a re-run cell) returns the running
receiver when the arguments are the same, or stops it and starts a new one when they differ:
never a second server thread, never "address already in use".
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import html
import ipaddress
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ReceiverError, SunoNbError, TaskFailedError, TunnelError, WaitTimeout
from .events import CallbackEvent, Dispatcher, Handler
from .receiver import MAX_BODY, AllowList, CallbackServer, DeliveryProcessor, Verdict
from .server import Limits
from .store import DEFAULT_PATH, TERMINAL_STATES, Delivery, Store, Submission

if TYPE_CHECKING:  # pandas loads on first use: `import suno_nb` stays light
    import pandas as pd

log = logging.getLogger(__name__)

TOKEN_META_KEY = "callback_token"
HMAC_ENV = "SUNO_WEBHOOK_HMAC_KEY"

LOCAL_ONLY_HINT = (
    "Local-only receiver: the hosted Suno API cannot reach a 127.0.0.1 URL, so its callbacks "
    "will not arrive here (the polling fallback still fetches results, and the local Sandbox "
    "works as is). Two ways to a public URL: without any account, install cloudflared and "
    "call start_receiver(tunnel='cloudflared') (a Cloudflare quick tunnel, new random URL "
    "each run); or get an ngrok authtoken at "
    "https://dashboard.ngrok.com/get-started/your-authtoken, set NGROK_AUTHTOKEN (environment, "
    ".env file or Colab secret) or pass start_receiver(authtoken=...), and run the cell again."
)
TUNNEL_MODES = ("auto", "ngrok", "cloudflared")
# ReceiverConfig fields a re-run may change on the running receiver: only its tunnel is
# replaced, so the port, the store and the callback URL's path stay the same.
TUNNEL_FIELDS = (
    "tunnel",
    "authtoken",
    "authtoken_sha256",
    "ngrok_path",
    "ngrok_config_path",
    "region",
    "tunnel_timeout",
    "cloudflared_path",
)


def _fingerprint(secret: str | None) -> str | None:
    """A secret's sha256 (hex): lets a re-run notice a new token without keeping it."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest() if secret else None


MASK = "…"


class _SecretStr(str):
    """A secret that works as its string, but whose repr and deep copies (so
    ``dataclasses.asdict``) show only a mask."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)

    def __deepcopy__(self, memo: dict) -> str:
        return MASK

    def __reduce__(self) -> tuple:
        return (str, (MASK,))


class _SecretBytes(bytes):
    """:class:`_SecretStr` for a key given as bytes."""

    def __repr__(self) -> str:
        return repr(MASK)

    def __deepcopy__(self, memo: dict) -> str:
        return MASK

    def __reduce__(self) -> tuple:
        return (str, (MASK,))


def _conceal(value: str | bytes | None) -> str | bytes | None:
    if isinstance(value, str):
        return value if isinstance(value, _SecretStr) else _SecretStr(value)
    if isinstance(value, bytes):
        return value if isinstance(value, _SecretBytes) else _SecretBytes(value)
    return value


@dataclass(frozen=True)
class ReceiverConfig:
    """Everything that decides whether a re-run may reuse the running receiver.

    ``hmac_key`` and ``authtoken`` are kept as concealed strings: they work as usual, but
    ``repr(config)`` and ``dataclasses.asdict(config)`` show only a mask.
    """

    store: str
    host: str = "127.0.0.1"
    port: int = 0
    hmac_key: str | bytes | None = field(default=None, repr=False)
    allow_ips: tuple[str, ...] | None = None
    tunnel: str | None = "auto"
    authtoken: str | None = field(default=None, repr=False)
    authtoken_sha256: str | None = None  # the token found at call time (any source), hashed
    ngrok_path: str | None = None
    ngrok_config_path: str | None = None
    region: str | None = None
    tunnel_timeout: float = 15.0
    cloudflared_path: str | None = None
    poll: bool = True
    poll_interval: float = 30.0
    poll_grace: float | None = None
    max_body: int = MAX_BODY
    socket_timeout: float = 15.0  # the whole-request deadline (headers + body), seconds
    signature_tolerance: float = 300.0
    max_connections: int = Limits.max_connections
    max_header_bytes: int = Limits.max_header_bytes
    keepalive: float = Limits.keepalive_s

    def __post_init__(self) -> None:
        object.__setattr__(self, "hmac_key", _conceal(self.hmac_key))
        object.__setattr__(self, "authtoken", _conceal(self.authtoken))

    @property
    def limits(self) -> Limits:
        """The HTTP server's limits."""
        return Limits(
            max_connections=self.max_connections,
            max_header_bytes=self.max_header_bytes,
            max_body_bytes=self.max_body,
            request_deadline_s=self.socket_timeout,
            keepalive_s=self.keepalive,
        )

    def same_but_tunnel(self, other: ReceiverConfig) -> bool:
        """True when ``other`` differs from this config in its tunnel fields at most."""
        return dataclasses.replace(self, **{f: getattr(other, f) for f in TUNNEL_FIELDS}) == other


@dataclass(frozen=True)
class TaskResult:
    """A task's final state and its tracks, however they arrived."""

    task_id: str
    state: str
    code: int | None
    msg: str | None
    error: str | None
    source: str | None
    tracks: pd.DataFrame = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"

    def raise_for_failure(self) -> TaskResult:
        """Raise :class:`TaskFailedError` unless the task succeeded (failed, or given up as
        unknown/expired: ``error`` then holds the reason); return self otherwise."""
        if not self.ok:
            raise TaskFailedError(self.task_id, self.code, self.error or self.msg)
        return self

    def __repr__(self) -> str:
        if self.ok:
            detail = f"{len(self.tracks)} track(s)"
        elif self.code is None and self.error:
            detail = self.error  # given up by the poller: the reason
        else:
            detail = f"code {self.code}: {self.msg}"
        return f"TaskResult({self.task_id!r}, {self.state}, {detail}, via {self.source})"

    def _repr_html_(self) -> str:
        head = html.escape(repr(self))
        cols = ["track_id", "title", "duration", "audio_url", "received_at", "source"]
        table = self.tracks[cols].to_html(index=False) if len(self.tracks) else ""
        return f"<div><b>{head}</b>{table}</div>"


def _loopback_only(host: str) -> str:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(
            f"host={host!r}: the receiver binds loopback only (127.0.0.1); "
            "use the tunnel to reach it from outside"
        )
    return host


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


class Receiver:
    """A running callback receiver.  Create it with :func:`start_receiver`."""

    def __init__(self, config: ReceiverConfig, *, client: Any = None):
        self.started_at = time.time()  # views default to tasks since then (+ open ones)
        self._logbook: Any = None
        self.config = config
        self.store = Store(config.store)
        token = self.store.get_meta(TOKEN_META_KEY)
        if token is None:
            token = secrets.token_urlsafe(24)  # 192 bits: the path is a capability
            self.store.set_meta(TOKEN_META_KEY, token)
        self._dispatcher = Dispatcher()
        self._processor = DeliveryProcessor(
            self.store,
            hmac_key=config.hmac_key,
            allow_list=AllowList(config.allow_ips) if config.allow_ips is not None else None,
            signature_tolerance=config.signature_tolerance,
        )
        self._server = CallbackServer(
            self._processor,
            token=token,
            host=config.host,
            port=config.port,
            limits=config.limits,
            on_stored=self._notify,
            tunnel_active=lambda: self._tunnel is not None,
        )
        self._tunnel: Any = None
        self.tunnel_note: str | None = None
        self._client = client
        self._poller: Any = None
        self._stopped = False
        self._start_or_release()

    def _start_or_release(self) -> None:
        """Start serving; if that fails (port taken, ...) close what the constructor opened
        (dispatcher, store) before the error propagates: a failed Receiver leaks nothing."""
        try:
            self._server.start()
        except BaseException:
            self._dispatcher.stop()
            self.store.close()
            raise

    # --- addresses ----------------------------------------------------------------------

    @property
    def local_url(self) -> str:
        """The loopback callback URL (reachable from this machine only)."""
        return f"http://{self.config.host}:{self._server.port}{self._server.path}"

    @property
    def public_url(self) -> str | None:
        """The tunnel's public base URL, or None when local-only."""
        return None if self._tunnel is None else self._tunnel.public_url

    @property
    def url(self) -> str:
        """The URL to give the API as ``callBackUrl``: public when tunnelled, else local."""
        if self._tunnel is not None:
            return self._tunnel.public_url.rstrip("/") + self._server.path
        return self.local_url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def mode(self) -> str:
        """``"ngrok"`` or ``"cloudflared"`` while that tunnel is open, else ``"local"``."""
        return self._tunnel.kind if self._tunnel is not None else "local"

    @property
    def running(self) -> bool:
        return not self._stopped and self._server.running

    @property
    def signed(self) -> bool:
        """True when callbacks must carry a valid webhook signature (``hmac_key`` set)."""
        return self._processor.signed

    # --- tunnel -------------------------------------------------------------------------

    def _open_tunnel(self, authtoken: str | None = None) -> None:
        """Open the tunnel ``config.tunnel`` asks for; ``authtoken`` as resolved by the caller.

        ``"auto"`` opens ngrok when there is a token and stays local (with the hint) when
        there is none or ngrok fails; ``"ngrok"`` and ``"cloudflared"`` raise the tunnel's
        actionable error instead.
        """
        self._authtoken = authtoken  # kept off the config; only the tunnel and log scrub use it
        mode = self.config.tunnel
        if mode is None:
            self.tunnel_note = "tunnel disabled (tunnel=None)"
            return
        if mode not in TUNNEL_MODES:
            raise ValueError(f"tunnel={mode!r}: use 'auto', 'ngrok', 'cloudflared' or None")
        from . import tunnel as _tunnel

        settings = _tunnel.TunnelSettings(
            authtoken=authtoken,
            ngrok_path=self.config.ngrok_path,
            config_path=self.config.ngrok_config_path,
            region=self.config.region,
            start_timeout=self.config.tunnel_timeout,
            cloudflared_path=self.config.cloudflared_path,
        )
        if mode == "cloudflared":
            self._tunnel = _tunnel.open_quick_tunnel(
                self._server.port, settings, host=self.config.host
            )
            self.tunnel_note = None
            log.info("quick tunnel open: %s", self._tunnel.public_url)
            return
        if authtoken is None and mode == "auto":
            self.tunnel_note = LOCAL_ONLY_HINT
            log.warning(LOCAL_ONLY_HINT)
            return
        try:
            self._tunnel = _tunnel.open_tunnel(self._server.port, settings, host=self.config.host)
        except TunnelError as exc:
            if mode == "ngrok":
                raise
            self.tunnel_note = f"{exc} {LOCAL_ONLY_HINT}"
            log.warning("tunnel unavailable, receiver is local-only: %s", exc)
            return
        self.tunnel_note = None
        log.info("tunnel open: %s", self._tunnel.public_url)

    def _close_tunnel(self) -> None:
        """Close the open tunnel, if any (a re-run replacing it, or one whose agent died)."""
        tunnel, self._tunnel = self._tunnel, None
        if tunnel is not None:
            try:
                tunnel.close()
            except SunoNbError:
                log.exception("closing the tunnel failed")

    def _tunnel_missing(self) -> bool:
        """The config asks for a tunnel (with a token, for ngrok) but none is open: it failed
        earlier (say, no ngrok program yet) or its agent died.  A re-run tries again."""
        wanted = self.config.tunnel == "cloudflared" or (
            self.config.tunnel in ("auto", "ngrok") and self.config.authtoken_sha256 is not None
        )
        return wanted and (self._tunnel is None or self._tunnel.closed)

    def _retunnel(self, config: ReceiverConfig, authtoken: str | None) -> None:
        """Keep this receiver (port, store, callback path) and replace only its tunnel."""
        self._close_tunnel()
        self.config = config
        self._open_tunnel(authtoken)

    # --- polling ------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The client the poller uses (the one that last submitted, or the one passed)."""
        return self._client

    def use_client(self, client: Any) -> None:
        """Poll with ``client`` from now on."""
        self._client = client
        if self._poller is not None:
            self._poller.wake()

    def _start_poller(self) -> None:
        self._attach_logbook()
        if not self.config.poll:
            return
        from .poller import Poller

        self._poller = Poller(
            self.store,
            self._store_poll_result,
            lambda: self._client,
            interval=self.config.poll_interval,
            grace=self.config.poll_grace,
        )
        self._poller.start()

    # --- the log: records kept for rx.log() and the repr, never printed ------------------

    def _attach_logbook(self) -> None:
        if self._logbook is not None:
            return
        from .logbook import Logbook

        token = self._server.path.rstrip("/").rsplit("/", 1)[-1]
        self._logbook = Logbook(
            secrets=(
                token,
                self.config.hmac_key,
                self.config.authtoken,
                getattr(self, "_authtoken", None),  # found in env/.env/Colab: not in config
            )
        ).attach()

    def _detach_logbook(self) -> None:
        if self._logbook is not None:
            self._logbook.detach()

    def log(self, level: str | int = "INFO") -> pd.DataFrame:
        """Recent suno_nb log records (time, level, logger, message), oldest first.

        Background threads never print into cells; what they log is kept here (the last
        500 records at ``level`` or above, kept while this receiver runs).
        """
        import logging as _logging

        from .logbook import COLUMNS

        number = level if isinstance(level, int) else _logging.getLevelName(str(level).upper())
        if not isinstance(number, int):
            raise ValueError(f"level={level!r}: use DEBUG, INFO, WARNING or ERROR")
        if self._logbook is None:
            import pandas as _pd

            return _pd.DataFrame({c: [] for c in COLUMNS})
        return self._logbook.frame(level=number)

    def _warnings(self) -> list[str]:
        """Plain-words notes for the repr: tasks we gave up on, then recent warnings."""
        notes: list[str] = []
        if not self.store.closed:
            try:
                rows = self.store.query(
                    "SELECT state, count(*) AS n FROM tasks WHERE state IN (?, ?) GROUP BY state",
                    ("unknown", "expired"),
                )
            except SunoNbError:
                rows = []
            words = {
                "unknown": "unknown to the service (no longer polled)",
                "expired": "older than the service keeps results (no longer polled)",
            }
            for row in rows:
                n = int(row["n"])
                notes.append(f"{n} task{'s' if n != 1 else ''} {words[row['state']]}")
        if self._logbook is not None:
            seen: dict[str, int] = {}
            for entry in self._logbook.warnings(since=self.started_at):
                seen[entry.message] = seen.get(entry.message, 0) + 1
            for message, n in list(seen.items())[-5:]:
                notes.append(message if n == 1 else f"{message} (×{n})")
        return notes

    @property
    def poller(self) -> Any:
        return self._poller

    def _store_poll_result(self, delivery: Delivery, callback: Any) -> None:
        outcome = self.store.record_callback(delivery, callback)
        self._notify(Verdict(200, None, outcome, callback), source="poll")

    # --- recording and events ------------------------------------------------------------

    def record_submission(self, submission: Submission, client: Any = None) -> None:
        """Record a submitted task as pending (the client calls this after a submit)."""
        self.store.record_submission(submission)
        if client is not None:
            self._client = client
        if self._poller is not None:
            self._poller.wake()

    def _notify(self, verdict: Verdict, source: str = "callback") -> None:
        outcome = verdict.outcome
        if outcome is None or verdict.callback is None:
            return
        if outcome.verdict != "accepted" and source != "replay":
            return
        self._dispatcher.dispatch(
            CallbackEvent(
                task_id=outcome.task_id,
                state=outcome.state,
                verdict=outcome.verdict,
                source=source,
                delivery_id=outcome.delivery_id,
                new_track_ids=outcome.new_track_ids,
                callback=verdict.callback,
            )
        )

    def on_callback(self, fn: Handler, remove: bool = False) -> Handler:
        """Call ``fn(event)`` for every new result, after it is stored and acknowledged.

        Usable as a decorator (``@rx.on_callback``): returns ``fn`` unchanged.  ``fn`` runs on
        a background thread; exceptions are logged (see :meth:`log`), not raised.  Pass
        ``remove=True`` to unregister.  Widgets should update traits, never print.
        """
        self._dispatcher.on(fn, remove=remove)
        return fn

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every acknowledged delivery's handlers have run."""
        deadline = time.monotonic() + timeout
        if not self._server.wait_idle(timeout):
            return False
        return self._dispatcher.join(max(0.0, deadline - time.monotonic()))

    def replay(self, delivery_id: int) -> Verdict:
        """Re-run a stored delivery through verification and storage, without the network.

        Handlers run again (event source ``"replay"``); rows already stored are not
        duplicated.  The signature is checked as of the original arrival time.
        """
        row = self.store.delivery(delivery_id)
        if row is None:
            raise KeyError(f"no delivery with id {delivery_id}")
        import json

        delivery = Delivery(
            body=row["body"] or b"",
            source="replay",
            remote_addr=row["remote_addr"],
            via_tunnel=bool(row["via_tunnel"]),
            method=row["method"],
            path=row["path"],
            headers=json.loads(row["headers"]),
            replay_of=delivery_id,
        )
        verdict = self._processor.process(delivery, signature_now=row["received_at"])
        if verdict.outcome is not None:
            self._notify(verdict, source="replay")
        return verdict

    # --- tables ---------------------------------------------------------------------------

    def session_tasks(self, *, history: bool = False) -> list[dict[str, Any]]:
        """This session's task rows, oldest first, read by key: tasks submitted or first seen
        since :attr:`started_at` plus any still open (however old).  ``history=True``: every
        task in the store.  The widgets' default scope."""
        return self.store.tasks_since(0.0 if history else self.started_at, include_open=True)

    def frame(self) -> pd.DataFrame:
        """One row per result track, typed columns (see :mod:`suno_nb.frame`)."""
        from . import frame as _frame

        return _frame.frame(self.store)

    def tasks(self) -> pd.DataFrame:
        """One row per task, pending, succeeded or failed."""
        from . import frame as _frame

        return _frame.tasks(self.store)

    def deliveries(self) -> pd.DataFrame:
        """Every delivery received, including rejected ones with the reason."""
        from . import frame as _frame

        return _frame.deliveries(self.store)

    def download(
        self, dest: str | os.PathLike[str], *, progress: bool = True, session: Any = None
    ) -> pd.DataFrame:
        """Archive every result track's audio and cover into ``dest/<task_id>/``.

        Files already there are skipped, so a second call downloads nothing.  Results on
        the hosted service expire after 14 days: download what you want to keep.
        """
        from .audio import download_results

        return download_results(self.frame(), dest, session=session, progress=progress)

    # --- ratings (the ledger) ------------------------------------------------------------

    def rate(
        self, track_id: str, stars: int, note: str | None = None, *, task_id: str | None = None
    ) -> None:
        """Give a result track 1..5 ``stars`` and an optional ``note``; shows in
        :meth:`frame` (``rating``, ``note``) and survives restarts (it is in the store).

        ``task_id`` is needed only when the track id occurs in several tasks.
        """
        self.store.rate(track_id, stars, note, task_id=task_id)

    def pick(self, track_id: str, *, task_id: str | None = None) -> None:
        """Mark a result track as the take to keep (``picked`` in :meth:`frame`); one pick
        per task, so picking another take of the task replaces it."""
        self.store.pick(track_id, task_id=task_id)

    def result(self, task_id: str) -> TaskResult | None:
        """The task's final result, or None while it is open or not in the store.

        A task the poller gave up on (``unknown`` to the service, or ``expired``) is final
        too; its ``error`` says why.
        """
        task = self.store.task(task_id)
        if task is None or task["state"] not in TERMINAL_STATES:
            return None
        return TaskResult(
            task_id,
            task["state"],
            task["code"],
            task["msg"],
            task["error"] or task.get("reason"),
            task["source"],
            _tracks_frame(task, self.store.tracks_of(task_id)),  # by key, not the whole table
        )

    def wait(
        self,
        task_id: str,
        timeout: float = 600.0,
        *,
        progress: bool | None = None,
        raise_on_failure: bool = False,
    ) -> TaskResult:
        """Block until ``task_id`` has a final result (callback or poll) and return it.

        Shows a progress bar in notebooks (``progress=None``: only there).  Raises
        :class:`WaitTimeout` after ``timeout`` seconds; with ``raise_on_failure`` a failed
        task raises :class:`TaskFailedError` instead of being returned.
        """
        show = _in_notebook() if progress is None else progress
        deadline = time.monotonic() + timeout
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=None,
                desc=f"waiting for {task_id[:12]}",
                unit="s",
                bar_format="{desc}: {elapsed} {postfix}",
            )
        try:
            seen = self.store.version
            while True:
                result = self.result(task_id)
                if result is not None:
                    if bar is not None:
                        bar.set_postfix_str(f"{result.state} via {result.source}")
                    return result.raise_for_failure() if raise_on_failure else result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    task = self.store.task(task_id)
                    state = None
                    if task is not None:
                        state = task["service_status"] or task["state"]
                    raise WaitTimeout(task_id, timeout, state)
                if bar is not None:
                    task = self.store.task(task_id)
                    status = (task or {}).get("service_status") or "waiting"
                    bar.set_postfix_str(status)
                    bar.update(0)
                seen = self.store.wait_for_change(seen, min(remaining, 0.5))
        finally:
            if bar is not None:
                bar.close()

    # --- lifecycle --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop polling, close the tunnel, free the port, end the threads.  Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._poller is not None:
            self._poller.stop()
        if self._tunnel is not None:
            try:
                self._tunnel.close()
            except SunoNbError:
                log.exception("closing the tunnel failed")
            self._tunnel = None
        self._server.stop()
        self._dispatcher.stop()
        self._detach_logbook()
        self.store.close()
        from . import client as _client

        if _client.get_default_receiver() is self:
            _client.set_default_receiver(None)

    # --- display ------------------------------------------------------------------------------

    def _summary(self) -> dict[str, Any]:
        counts = self.store.counts() if not self.store.closed else {}
        # The callback path token is a capability: shown masked, read it from rx.url.
        url = self.url.rsplit("/", 1)[0] + "/…" if self.running else None
        store = self.store.path
        if not self.store.memory:
            rel = os.path.relpath(store)
            store = rel if not rel.startswith("..") else store
        problem = None if self.store.closed else self.store.problem
        if problem:  # e.g. the file was deleted: every callback is answered 503 until restart
            store = f"{store} UNAVAILABLE: {problem}; callbacks get 503 until restarted"
        return {
            "state": "running" if self.running else "stopped",
            "mode": self.mode,
            "url": url,
            "store": store,
            "signed": self.signed,
            **counts,
        }

    def __repr__(self) -> str:
        s = self._summary()
        parts = [f"{s['state']}", f"mode={s['mode']}", f"url={s['url']}", f"store={s['store']!r}"]
        if "tasks" in s:
            parts.append(
                f"tasks={s['tasks']} tracks={s['tracks']} "
                f"deliveries={s['deliveries']} rejected={s['rejected']} "
                f"pending={s['pending']}"
            )
        text = f"<Receiver {' '.join(parts)}>"
        if self.tunnel_note and self.running:
            text += f"\n{self.tunnel_note}"
        for line in self._warnings():
            text += f"\n⚠ {line}"
        return text

    def _repr_html_(self) -> str:
        s = self._summary()
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'><code>{html.escape(str(v))}</code></td></tr>"
            for k, v in s.items()
        )
        note = (
            f"<p style='color:#a60'>{html.escape(self.tunnel_note)}</p>"
            if self.tunnel_note and self.running
            else ""
        )
        warned = self._warnings()
        if warned:
            items = "".join(f"<li>{html.escape(w)}</li>" for w in warned)
            note += (
                "<div style='color:#a60'>Warnings (details: <code>rx.log()</code>)"
                f"<ul style='margin:2px 0'>{items}</ul></div>"
            )
        return f"<div><b>suno_nb Receiver</b><table>{rows}</table>{note}</div>"


def _tracks_frame(task: dict[str, Any], tracks: list[dict[str, Any]]) -> pd.DataFrame:
    """One task's tracks with the columns and dtypes of :func:`suno_nb.frame.frame`."""
    import pandas as pd

    from .frame import FRAME_COLUMNS

    submitted = task.get("submitted_at")
    rows = [
        {
            **{c: tr.get(c) for c in FRAME_COLUMNS},
            "callback_type": task.get("callback_type"),
            "code": task.get("code"),
            "msg": task.get("msg"),
            "created_at": tr.get("create_time"),
            "parent_task_id": task.get("parent_task_id"),
            "audio_id": task.get("audio_id"),
            "infill_start_s": task.get("infill_start_s"),
            "infill_end_s": task.get("infill_end_s"),
            "submitted_at": submitted,
            "latency_s": None if submitted is None else tr["received_at"] - submitted,
        }
        for tr in tracks
    ]
    df = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    df["code"] = df["code"].astype("Int64")
    for col in ("duration", "infill_start_s", "infill_end_s", "latency_s"):
        df[col] = df[col].astype("float64")
    df["created_at"] = pd.to_datetime(df["created_at"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    for col in ("received_at", "submitted_at"):
        df[col] = pd.to_datetime(df[col].astype("float64"), unit="s", utc=True)
    return df


# --- module state: one receiver per process -------------------------------------------------

_CURRENT: Receiver | None = None
_LOCK = threading.RLock()


def current_receiver() -> Receiver | None:
    """The running receiver of this process, if any."""
    rx = _CURRENT
    return rx if rx is not None and rx.running else None


def start_receiver(
    store: str | os.PathLike[str] = DEFAULT_PATH,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    hmac_key: str | bytes | None = None,
    allow_ips: Iterable[str] | None = None,
    tunnel: str | None = "auto",
    authtoken: str | None = None,
    ngrok_path: str | None = None,
    ngrok_config_path: str | None = None,
    region: str | None = None,
    tunnel_timeout: float = 15.0,
    cloudflared_path: str | None = None,
    poll: bool = True,
    poll_interval: float = 30.0,
    poll_grace: float | None = None,
    client: Any = None,
    max_body: int = MAX_BODY,
    socket_timeout: float = 15.0,
    signature_tolerance: float = 300.0,
    max_connections: int = Limits.max_connections,
) -> Receiver:
    """Start (or return the running) callback receiver for this notebook.

    - ``store``: SQLite file (default ``suno_callbacks.sqlite3`` here) or ``":memory:"``.
    - ``hmac_key``: verify webhook signatures (default: ``SUNO_WEBHOOK_HMAC_KEY`` from the
      environment, a ``.env`` file or Colab's secrets, read at each call).
    - ``allow_ips``: accept callbacks only from these addresses/networks.
    - ``tunnel``: ``"auto"`` opens ngrok when an authtoken is available (``authtoken``, else
      ``NGROK_AUTHTOKEN`` from the environment, a ``.env`` file or Colab's secrets, else
      ngrok's config file — read at each call) and stays local otherwise; ``"ngrok"``
      requires it; ``"cloudflared"`` opens a Cloudflare quick tunnel (no account; needs the
      ``cloudflared`` program on PATH or ``cloudflared_path``; a new random URL each start,
      no uptime guarantee); ``None`` never opens one.  ``tunnel_timeout``: seconds the
      tunnel agent gets to come up.
    - ``poll``: run the polling fallback (record-info every ``poll_interval`` s for tasks
      whose callback has not come, after ``poll_grace`` s); ``client`` is used to poll.
    - Limits of the HTTP server: ``max_body`` bytes per body (413), ``socket_timeout`` s for
      the whole request, headers and body (408), ``max_connections`` open at once (past it
      the oldest stalled or idle connection is closed to make room).

    Re-running with the same arguments (and the same secrets found) returns the running
    receiver; when only the tunnel's arguments or the authtoken changed (say
    ``NGROK_AUTHTOKEN`` was set since), the running receiver keeps its port, store and
    callback URL path and only its tunnel is replaced; other changes replace it cleanly.
    """
    global _CURRENT
    from .credentials import find_secret

    if hmac_key is None:
        found = find_secret(HMAC_ENV)
        hmac_key = found.value if found is not None else None
    token = None
    if tunnel in ("auto", "ngrok"):
        from .tunnel import resolve_authtoken

        token = resolve_authtoken(authtoken, config_path=ngrok_config_path)
    store_path = str(store) if str(store) == ":memory:" else str(Path(store).resolve())
    config = ReceiverConfig(
        store=store_path,
        host=_loopback_only(host),
        port=port,
        hmac_key=hmac_key,
        allow_ips=tuple(allow_ips) if allow_ips is not None else None,
        tunnel=tunnel,
        authtoken=authtoken,
        authtoken_sha256=_fingerprint(token),
        ngrok_path=ngrok_path,
        ngrok_config_path=ngrok_config_path,
        region=region,
        tunnel_timeout=tunnel_timeout,
        cloudflared_path=cloudflared_path,
        poll=poll,
        poll_interval=poll_interval,
        poll_grace=poll_grace,
        max_body=max_body,
        socket_timeout=socket_timeout,
        signature_tolerance=signature_tolerance,
        max_connections=max_connections,
    )
    with _LOCK:
        old = _CURRENT
        if old is not None and old.running and old.config.same_but_tunnel(config):
            if old.config != config or old._tunnel_missing():
                log.info("start_receiver: new tunnel for the receiver on port %d", old.port)
                try:
                    old._retunnel(config, token)
                except BaseException:
                    old.stop()
                    _CURRENT = None
                    raise
            else:
                log.info("start_receiver: reusing the running receiver on port %d", old.port)
            if client is not None:
                old.use_client(client)
            return old
        if old is not None:
            old.stop()
            _CURRENT = None
        try:
            rx = Receiver(config, client=client)
        except OSError as exc:
            raise ReceiverError(f"could not start the receiver on {host}:{port}: {exc}") from exc
        try:
            rx._open_tunnel(token)
            rx._start_poller()
        except BaseException:
            rx.stop()
            raise
        _CURRENT = rx
        from . import client as _client

        _client.set_default_receiver(rx)
        return rx


def stop_receiver() -> None:
    """Stop the running receiver, if any (port freed, tunnel closed).  Idempotent."""
    global _CURRENT
    with _LOCK:
        rx, _CURRENT = _CURRENT, None
    if rx is not None:
        rx.stop()


atexit.register(stop_receiver)
