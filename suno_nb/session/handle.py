"""The Receiver handle: wires the store, the HTTP server thread, the dispatcher, the tunnel
and the polling fallback."""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from ..errors import SunoNbError
from ..events import CallbackEvent, Dispatcher, Handler
from ..receiver import AllowList, CallbackServer, DeliveryProcessor, Verdict
from ..store import Delivery, Store, Submission

if TYPE_CHECKING:  # pandas loads on first use: `import suno_nb` stays light
    pass


from .config import TOKEN_META_KEY, ReceiverConfig
from .results import ResultsMixin
from .tunnels import TunnelMixin
from .view import ViewMixin

log = logging.getLogger("suno_nb.session")


class Receiver(TunnelMixin, ResultsMixin, ViewMixin):
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
        from ..poller import Poller

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
        from .. import client as _client

        if _client.get_default_receiver() is self:
            _client.set_default_receiver(None)
