"""Judging and storing one delivery: shared by the HTTP path and ``replay()``.

Per delivery, in order: content type (415); JSON (400); callback schema (400); optional
HMAC signature bound to the body (401); optional IP allow-list (403).  Then the raw delivery
and its rows are committed by the store's single writer; a failed store answers 503 so the
sender retries: nothing acknowledged is ever lost.  Every rejection leaves a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

from ..errors import PayloadError, SignatureError, StoreError
from ..payloads import Callback, parse_callback
from ..signing import SIGNATURE_HEADER, SignatureMemory, header, signature_key, verify
from ..store import Delivery, Outcome, Store
from ..store.writer import LoopWaker

log = logging.getLogger("suno_nb.receiver")

ACK = json.dumps({"code": 200, "msg": "success"}).encode()
STORE_FAILED = "the receiver could not store the callback; retry later"


@dataclass(frozen=True)
class Verdict:
    """The answer to one delivery, and what was stored."""

    status: int
    reason: str | None
    outcome: Outcome | None = None
    callback: Callback | None = None

    @property
    def body(self) -> bytes:
        if self.status == 200:
            return ACK
        return json.dumps({"code": self.status, "msg": self.reason}).encode()


class AllowList:
    """An IP allow-list of addresses and networks (``"203.0.113.0/24"``)."""

    def __init__(self, entries: Iterable[str]):
        self.networks = tuple(ipaddress.ip_network(e, strict=False) for e in entries)

    def allows(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def __repr__(self) -> str:
        return f"AllowList({[str(n) for n in self.networks]})"


class DeliveryProcessor:
    """Judges and stores one delivery.  Shared by the HTTP path and ``replay()``."""

    def __init__(
        self,
        store: Store,
        *,
        hmac_key: str | bytes | None = None,
        allow_list: AllowList | None = None,
        signature_tolerance: float = 300.0,
    ):
        self.store = store
        self._hmac_key = hmac_key
        self.allow_list = allow_list
        self.signature_tolerance = signature_tolerance
        self.signatures = SignatureMemory(signature_tolerance)
        self._loop_waker: LoopWaker | None = None
        if hmac_key is not None:
            self._remember_recent()

    def _remember_recent(self) -> None:
        """Bind the signatures stored in the last window to their bodies (a restart in the
        middle of a replay attempt must not forget them)."""
        since = time.time() - 2 * self.signature_tolerance
        try:
            rows = self.store.query(
                "SELECT headers, body, received_at FROM deliveries "
                "WHERE received_at >= ? AND verdict != 'rejected' ORDER BY id",
                (since,),
            )
        except StoreError as exc:
            log.warning("could not read recent signatures: %s", exc)
            return
        for row in rows:
            try:
                headers = json.loads(row["headers"] or "{}")
            except ValueError:
                continue
            if header(headers, SIGNATURE_HEADER):
                key = signature_key(headers)
                self.signatures.check(key, bytes(row["body"] or b""), row["received_at"])

    @property
    def signed(self) -> bool:
        return self._hmac_key is not None

    def judge(
        self,
        delivery: Delivery,
        *,
        check_content_type: bool = True,
        signature_now: float | None = None,
    ) -> Callback | tuple[int, str, str | None]:
        """The parsed callback to store, or ``(status, reason, task_id)`` to reject."""
        if check_content_type:
            ctype = header(delivery.headers, "Content-Type") or ""
            if ctype.split(";", 1)[0].strip().lower() != "application/json":
                return 415, f"Content-Type must be application/json, got {ctype[:100]!r}", None
        try:
            callback = parse_callback(delivery.body)
        except PayloadError as exc:
            return 400, exc.reason, None
        except Exception as exc:  # bad input never becomes a 5xx
            log.warning("body could not be parsed: %s", type(exc).__name__)
            return 400, f"body could not be parsed ({type(exc).__name__})", None
        if self._hmac_key is not None:
            try:
                verify(
                    self._hmac_key,
                    delivery.headers,
                    callback.task_id,
                    now=signature_now,
                    tolerance=self.signature_tolerance,
                )
            except SignatureError as exc:
                return 401, f"signature check failed: {exc.reason}", callback.task_id
            signature = signature_key(delivery.headers)
            if not self.signatures.check(signature, delivery.body, signature_now):
                return 401, "signature reused with a different body", callback.task_id
        if self.allow_list is not None and not self.allow_list.allows(delivery.remote_addr):
            address = delivery.remote_addr
            return 403, f"client address {address} is not in the allow-list", callback.task_id
        return callback

    def process(
        self,
        delivery: Delivery,
        *,
        check_content_type: bool = True,
        signature_now: float | None = None,
    ) -> Verdict:
        """Verify ``delivery`` and store it, blocking; return the HTTP answer to give."""
        judged = self.judge(
            delivery, check_content_type=check_content_type, signature_now=signature_now
        )
        if isinstance(judged, tuple):
            return self.reject(delivery, *judged)
        try:
            outcome = self.store.record_callback(delivery, judged)
        except StoreError as exc:
            log.error("store write failed; answering 503 so the sender retries: %s", exc)
            return Verdict(503, STORE_FAILED)
        return Verdict(200, None, outcome, judged)

    async def process_async(self, delivery: Delivery) -> Verdict:
        """:meth:`process` for the event loop: the store's writer commits, the loop waits."""
        judged = self.judge(delivery)
        if isinstance(judged, tuple):
            status, reason, task_id = judged
            await settle(self.submit_rejection(delivery, status, reason, task_id))
            return Verdict(status, reason)
        try:
            outcome = await self._waker().wrap(self.store.submit_callback(delivery, judged))
        except StoreError as exc:
            log.error("store write failed; answering 503 so the sender retries: %s", exc)
            return Verdict(503, STORE_FAILED)
        return Verdict(200, None, outcome, judged)

    def _waker(self) -> LoopWaker:
        loop = asyncio.get_running_loop()
        if self._loop_waker is None or self._loop_waker.loop is not loop:
            self._loop_waker = LoopWaker(loop)  # a restarted server runs a new loop
        return self._loop_waker

    def submit_rejection(
        self, delivery: Delivery, status: int, reason: str, task_id: str | None = None
    ) -> Future[int] | None:
        """Queue the rejected delivery's row (non-blocking); None if the store refused."""
        log.info("rejected delivery from %s: %d %s", delivery.remote_addr, status, reason)
        try:
            future = self.store.submit_rejection(delivery, status, reason, task_id)
        except StoreError as exc:
            log.warning("could not record a rejected delivery (%s): %s", reason, exc)
            return None
        future.add_done_callback(_log_failed_rejection)
        return future

    def reject(
        self, delivery: Delivery, status: int, reason: str, task_id: str | None = None
    ) -> Verdict:
        """Record a rejection (waiting for its row) and return the answer."""
        future = self.submit_rejection(delivery, status, reason, task_id)
        if future is not None:
            with contextlib.suppress(StoreError):  # logged by the done callback
                future.result()
        return Verdict(status, reason)


def _log_failed_rejection(future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        log.warning("could not record a rejected delivery: %s", exc)


async def settle(future: Future | None) -> None:
    """Wait for a row to be committed (so that it is visible once the sender has the answer)."""
    if future is not None:
        with contextlib.suppress(StoreError):  # logged by the done callback
            await asyncio.wrap_future(future)
