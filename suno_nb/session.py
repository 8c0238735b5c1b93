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


@dataclass(frozen=True)
class ReceiverConfig:
    """Everything that decides whether a re-run may reuse the running receiver."""

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
    socket_timeout: float = 10.0
    signature_tolerance: float = 300.0

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
        """Raise :class:`TaskFailedError` if the task failed; return self otherwise."""
        if self.state == "failed":
            raise TaskFailedError(self.task_id, self.code, self.error or self.msg)
        return self

    def __repr__(self) -> str:
        detail = f"{len(self.tracks)} track(s)" if self.ok else f"code {self.code}: {self.msg}"
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
            max_body=config.max_body,
            socket_timeout=config.socket_timeout,
            on_stored=self._notify,
            tunnel_active=lambda: self._tunnel is not None,
        )
        self._tunnel: Any = None
        self.tunnel_note: str | None = None
        self._client = client
        self._poller: Any = None
        self._stopped = False
        self._server.start()

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

    def on_callback(self, fn: Handler, remove: bool = False) -> None:
        """Call ``fn(event)`` for every new result, after it is stored and acknowledged.

        ``fn`` runs on a background thread; exceptions are logged, not raised.  Pass
        ``remove=True`` to unregister.  Widgets should update traits, never print.
        """
        self._dispatcher.on(fn, remove=remove)

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

    def result(self, task_id: str) -> TaskResult | None:
        """The task's final result, or None while it is pending or unknown."""
        task = self.store.task(task_id)
        if task is None or task["state"] not in TERMINAL_STATES:
            return None
        tracks = self.frame()
        return TaskResult(
            task_id,
            task["state"],
            task["code"],
            task["msg"],
            task["error"],
            task["source"],
            tracks[tracks["task_id"] == task_id].reset_index(drop=True),
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
        return f"<div><b>suno_nb Receiver</b><table>{rows}</table>{note}</div>"


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
    socket_timeout: float = 10.0,
    signature_tolerance: float = 300.0,
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
