"""The callback HTTP server: limits, verification, durable store, then the acknowledgement.

Per request, in order: path (404) and method (405); size limit (413); content type (415);
JSON (400); callback schema (400); optional HMAC signature (401); optional IP allow-list
(403); then the raw delivery and its rows are stored in ONE transaction and only then the
sender gets ``200 {"code": 200, "msg": "success"}``.  A failed store answers 503 so the
sender retries: nothing acknowledged is ever lost.  Handlers are told after the ack.
"""

from __future__ import annotations

import email.parser
import hmac
import http.client
import ipaddress
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .errors import PayloadError, SignatureError, StoreError
from .payloads import Callback, parse_callback
from .signing import verify
from .store import Delivery, Outcome, Store

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
ACK = json.dumps({"code": 200, "msg": "success"}).encode()
CALLBACK_PREFIX = "/callback/"
FORWARDED_FOR = "X-Forwarded-For"

# While a receiver runs, the interpreter's GIL switch interval is lowered to this (seconds;
# None leaves it alone).  A request needs the GIL several times (socket wake-up, each SQLite
# step, the answer); when the notebook's main thread is busy in Python code, each of those
# can wait a whole switch interval (default 5 ms): p99 was 160 ms with 16 senders at 5 ms,
# 27 ms at 0.5 ms.  The interval only matters while two threads want the GIL at once: an
# idle receiver costs the notebook nothing, and two CPU-bound threads lost no measurable
# throughput at 0.5 ms.  Restored when the last receiver stops.  See docs/performance.md.
SWITCH_INTERVAL: float | None = 0.0005

_MAXLINE = 65536  # http.client's limits on one header line and on the number of headers
_MAXHEADERS = 100
_HEADER_NAME = re.compile(r"[\041-\071\073-\176]+")  # what email's parser takes as a name
_STATUS_LINES = {
    int(st): f"HTTP/1.1 {st.value} {st.phrase}\r\n".encode("latin-1") for st in HTTPStatus
}
_date_cache: tuple[int, bytes] = (0, b"")


def _date_header() -> bytes:
    """The ``Date`` header line for now, formatted once per second."""
    global _date_cache
    now = int(time.time())
    cached = _date_cache
    if cached[0] != now:
        cached = (now, f"Date: {formatdate(now, usegmt=True)}\r\n".encode("latin-1"))
        _date_cache = cached
    return cached[1]


def _parse_headers(fp) -> http.client.HTTPMessage:
    """``http.client.parse_headers`` without the email parser for plain ``Name: value`` lines.

    Same limits and exceptions; the same :class:`http.client.HTTPMessage` (built with
    ``set_raw``, as the parser does).  Anything unusual (folded lines, names the email parser
    would not take, stray CRs) goes through the stdlib parser on the very same bytes.
    """
    lines: list[bytes] = []
    while True:
        line = fp.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAXHEADERS:
            raise http.client.HTTPException(f"got more than {_MAXHEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    msg = http.client.HTTPMessage()
    for raw in lines[:-1]:
        text = raw.decode("iso-8859-1").rstrip("\r\n")
        name, colon, value = text.partition(":")
        if not colon or "\r" in text or not _HEADER_NAME.fullmatch(name):
            hstring = b"".join(lines).decode("iso-8859-1")
            return email.parser.Parser(_class=http.client.HTTPMessage).parsestr(hstring)
        msg.set_raw(name, value.lstrip(" \t"))
    return msg


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

    @property
    def signed(self) -> bool:
        return self._hmac_key is not None

    def reject(
        self, delivery: Delivery, status: int, reason: str, task_id: str | None = None
    ) -> Verdict:
        try:
            self.store.record_rejection(delivery, status, reason, task_id)
        except StoreError:
            log.exception("could not record a rejected delivery (%s)", reason)
        log.info("rejected delivery from %s: %d %s", delivery.remote_addr, status, reason)
        return Verdict(status, reason)

    def process(
        self,
        delivery: Delivery,
        *,
        check_content_type: bool = True,
        signature_now: float | None = None,
    ) -> Verdict:
        """Verify ``delivery`` and store it; return the HTTP answer to give."""
        if check_content_type:
            ctype = _header(delivery.headers, "Content-Type") or ""
            if ctype.split(";", 1)[0].strip().lower() != "application/json":
                return self.reject(
                    delivery, 415, f"Content-Type must be application/json, got {ctype!r}"
                )
        try:
            callback = parse_callback(delivery.body)
        except PayloadError as exc:
            return self.reject(delivery, 400, exc.reason)
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
                return self.reject(
                    delivery, 401, f"signature check failed: {exc.reason}", callback.task_id
                )
        if self.allow_list is not None and not self.allow_list.allows(delivery.remote_addr):
            return self.reject(
                delivery,
                403,
                f"client address {delivery.remote_addr} is not in the allow-list",
                callback.task_id,
            )
        try:
            outcome = self.store.record_callback(delivery, callback)
        except StoreError as exc:
            log.error("store write failed; answering 503 so the sender retries: %s", exc)
            return Verdict(503, "the receiver could not store the callback; retry later")
        return Verdict(200, None, outcome, callback)


def _header(headers, name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sender reuses its connection
    server: _Server
    server_version = "suno_nb"
    sys_version = ""

    def setup(self) -> None:
        self.timeout = self.server.owner.socket_timeout  # a stalled client times out
        super().setup()
        # Small JSON answers: send them now rather than waiting for Nagle.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args) -> None:
        if log.isEnabledFor(logging.DEBUG):  # no formatting per request unless it is shown
            log.debug("%s - %s", self.address_string(), format % args)

    def parse_request(self) -> bool:
        """The stdlib's ``parse_request``, faster for the plain ``HTTP/1.x`` request line.

        Anything else (HTTP/0.9, odd versions, bad syntax) goes to the stdlib's own
        ``parse_request``, which sends its usual error answers.
        """
        requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return super().parse_request()
        self.requestline = requestline
        self.command, path, self.request_version = words
        self.close_connection = words[2] == "HTTP/1.0"
        if path.startswith("//"):  # as the stdlib does (gh-87389)
            path = "/" + path.lstrip("/")
        self.path = path
        try:
            self.headers = _parse_headers(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err)
            )
            return False
        conntype = self.headers.get("Connection", "").lower()
        if conntype == "close":
            self.close_connection = True
        elif conntype == "keep-alive":
            self.close_connection = False
        expect = self.headers.get("Expect", "")
        if expect.lower() == "100-continue" and self.request_version >= "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
        """The whole answer, status line to body, in ONE write (one ``sendall``)."""
        if log.isEnabledFor(logging.DEBUG):
            self.log_request(status)
        head = [
            _STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n".encode("latin-1"),
            b"Server: suno_nb\r\n",
            _date_header(),
            b"Content-Type: application/json\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\n",
        ]
        for k, v in (extra or {}).items():
            head.append(f"{k}: {v}\r\n".encode("latin-1", "strict"))
        if self.close_connection:
            head.append(b"Connection: close\r\n")
        head.append(b"\r\n")
        head.append(body)
        self.wfile.write(b"".join(head))

    def _error(self, status: int, reason: str, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps({"code": status, "msg": reason}).encode(), extra)

    def _path_ok(self) -> bool:
        path = self.path.split("?", 1)[0]
        expected = self.server.owner.path
        return hmac.compare_digest(path.encode("utf-8", "replace"), expected.encode())

    def _not_post(self) -> None:
        self.close_connection = True  # any body is left unread
        if self._path_ok():
            self._error(405, "method not allowed; callbacks are POSTed", {"Allow": "POST"})
        else:
            self._error(404, "not found")

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_post

    def do_POST(self) -> None:
        owner = self.server.owner
        if not self._path_ok():
            self.close_connection = True
            self._error(404, "not found")
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            self._error(411, "Content-Length is required")
            return
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._error(400, "Content-Length is not a valid number")
            return
        if length > owner.max_body:
            self.close_connection = True
            owner.processor.reject(
                self._delivery(b""),
                413,
                f"body of {length} bytes exceeds the {owner.max_body} byte limit",
            )
            self._error(413, f"body exceeds the {owner.max_body} byte limit")
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            log.info("closing a stalled connection from %s", self.client_address[0])
            self.close_connection = True
            return
        if len(body) < length:  # the client hung up mid-body
            self.close_connection = True
            return
        verdict = owner.processor.process(self._delivery(body))
        if verdict.outcome is None:
            self._send(verdict.status, verdict.body)
            return
        # Counted from storage until the handlers are queued, so flush() cannot slip
        # between the ack and the dispatch.
        owner.inflight(+1)
        try:
            self._send(verdict.status, verdict.body)
        finally:
            owner.stored(verdict)
            owner.inflight(-1)

    def _delivery(self, body: bytes) -> Delivery:
        owner = self.server.owner
        peer = self.client_address[0]
        forwarded = self.headers.get(FORWARDED_FOR)
        via_tunnel = bool(forwarded) and owner.tunnel_active() and _is_loopback(peer)
        # The rightmost X-Forwarded-For entry is the one the tunnel agent added.
        remote = forwarded.split(",")[-1].strip() if via_tunnel else peer
        return Delivery(
            body=body,
            source="callback",
            remote_addr=remote,
            via_tunnel=via_tunnel,
            method=self.command,
            path=CALLBACK_PREFIX + "…",
            headers=dict(self.headers.items()),
            received_at=time.time(),
        )

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except TimeoutError:
            self.close_connection = True
        except ConnectionError:
            self.close_connection = True


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024  # a deep backlog: no connection waits for a SYN retry

    def __init__(self, address, owner: CallbackServer):
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:
        log.exception("error while handling a request from %s", client_address[0])


_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved: float | None = None


def _lower_switch_interval() -> None:
    """Lower the GIL switch interval to SWITCH_INTERVAL while a receiver runs."""
    global _switch_users, _switch_saved
    if SWITCH_INTERVAL is None:
        return
    with _switch_lock:
        if _switch_users == 0:
            current = sys.getswitchinterval()
            if current > SWITCH_INTERVAL:
                _switch_saved = current
                sys.setswitchinterval(SWITCH_INTERVAL)
                log.debug("GIL switch interval %.4f s -> %.4f s", current, SWITCH_INTERVAL)
            else:
                _switch_saved = None
        _switch_users += 1


def _restore_switch_interval() -> None:
    """Put the switch interval back when the last receiver stops (unless changed since)."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            return
        _switch_users -= 1
        if _switch_users == 0 and _switch_saved is not None:
            if abs(sys.getswitchinterval() - (SWITCH_INTERVAL or 0.0)) < 1e-9:
                sys.setswitchinterval(_switch_saved)
            _switch_saved = None


class CallbackServer:
    """The HTTP server thread.  ``start()`` binds, ``stop()`` frees the port; both idempotent."""

    def __init__(
        self,
        processor: DeliveryProcessor,
        *,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body: int = MAX_BODY,
        socket_timeout: float = 10.0,
        on_stored: Callable[[Verdict], None] | None = None,
        tunnel_active: Callable[[], bool] = lambda: False,
    ):
        self.processor = processor
        self.path = CALLBACK_PREFIX + token
        self.host = host
        self.max_body = max_body
        self.socket_timeout = socket_timeout
        self._on_stored = on_stored
        self.tunnel_active = tunnel_active
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._inflight = 0
        self._idle = threading.Condition()
        self._switched = False
        self._port: int | None = None

    def inflight(self, delta: int) -> None:
        with self._idle:
            self._inflight += delta
            if self._inflight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no stored delivery is between its ack and its dispatch."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def start(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            self._server = _Server((self.host, self._requested_port), self)
            self._port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name=f"suno_nb-receiver-{self.port}",
                daemon=True,
            )
            self._thread.start()
            if not self._switched and SWITCH_INTERVAL is not None:
                _lower_switch_interval()
                self._switched = True
            log.info("receiver listening on %s:%d", self.host, self.port)

    @property
    def port(self) -> int:
        """The bound port (the last one, once stopped)."""
        if self._port is None:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def stored(self, verdict: Verdict) -> None:
        if self._on_stored is not None:
            try:
                self._on_stored(verdict)
            except Exception:
                log.exception("notification after a stored delivery failed")

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            switched, self._switched = self._switched, False
        if switched:
            _restore_switch_interval()
        if server is None:
            return
        server.shutdown()  # never from the serving thread: stop() runs on the caller's
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        log.info("receiver stopped")
