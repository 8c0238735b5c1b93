"""The strict HTTP server (suno_nb.server) byte by byte: framing, limits, deadlines, stop()."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest

from suno_nb.server import Limits, ProtocolError, ServerThread

from .rawhttp import (
    answers,
    chunked,
    exchange,
    one_answer,
    read_answer,
    read_until_close,
    request,
)


async def echo_app(scope, receive, send):
    """Answers 200 JSON with the body length; 500s on path /boom."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    out = json.dumps({"code": 200, "msg": "ok", "n": len(body)}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})


@pytest.fixture
def server():
    errors: list[ProtocolError] = []
    srv = ServerThread(
        echo_app,
        limits=Limits(max_header_bytes=2048, max_body_bytes=4096, request_deadline_s=1.0),
        on_protocol_error=errors.append,
    ).start()
    srv.errors = errors  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def test_chunked_body_is_read(server):
    status, doc = one_answer(exchange(server.port, chunked("POST", "/x", b"x" * 1000)))
    assert (status, doc["n"]) == (200, 1000)


@pytest.mark.parametrize(
    "data",
    [
        chunked("POST", "/x", b"abc", te="gzip, chunked"),
        chunked("POST", "/x", b"abc", te="chunked", extra="Transfer-Encoding: chunked\r\n"),
        chunked("POST", "/x", b"abc", extra="Content-Length: 3\r\n"),
        request("POST", "/x", b"abc", {"Content-Length": "+3"}),
        request("POST", "/x", b"abc", {"Content-Length": "3_0"}),
        b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /x HTTP/1.1\r\nX-A: a\rb\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /x HTTP/1.1\r\n Folded: x\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /x HTTP/7.1\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /x HTTP/1.1\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS hello
    ],
)
def test_bad_framing_is_one_json_400_and_reported(server, data):
    status, doc = one_answer(exchange(server.port, data))
    assert status == 400, doc
    assert [e.status for e in server.errors] == [400]


def test_content_length_and_chunked_together_smuggle_nothing(server):
    smuggled = b"POST /smuggled HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    data = (
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" % len(body)
    ) + body
    got = answers(exchange(server.port, data))
    assert [g[0] for g in got] == [400]  # exactly one answer: the second request never ran


def test_head_answer_has_no_body(server):
    raw = exchange(server.port, request("HEAD", "/x"))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == b""


def test_size_limits(server):
    status, doc = one_answer(
        exchange(server.port, request("POST", "/x", b"", {"X-Big": "a" * 3000}))
    )
    assert status == 431
    status, doc = one_answer(exchange(server.port, request("POST", "/x", b"a" * 5000)))
    assert status == 413 and "4096" in doc["msg"]
    status, doc = one_answer(exchange(server.port, chunked("POST", "/x", b"a" * 5000)))
    assert status == 413
    url = "/" + "a" * 3000
    status, doc = one_answer(exchange(server.port, request("GET", url)))
    assert status == 431
    assert [e.status for e in server.errors] == [431, 413, 413, 431]


def test_whole_request_deadline_with_a_trickling_sender(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        started = time.monotonic()
        data = request("POST", "/x", b"{}")
        try:
            for byte in data:  # one byte every 0.2 s: each arrives in time, the whole does not
                conn.sendall(bytes([byte]))
                time.sleep(0.2)
        except OSError:
            pass
        status, _doc = one_answer(read_until_close(conn))
    assert status == 408
    assert time.monotonic() - started < 8
    assert [e.status for e in server.errors] == [408]


def test_app_exception_is_a_json_500(server):
    status, doc = one_answer(exchange(server.port, request("POST", "/boom", b"{}")))
    assert status == 500 and doc["msg"] == "internal error"


def test_no_log_record_reaches_stderr(server, capfd):
    for data in (b"garbage\r\n\r\n", request("POST", "/x", b"a" * 5000), request("POST", "/boom")):
        exchange(server.port, data)
    assert capfd.readouterr().err == ""


def test_stop_closes_idle_keepalive_connections_and_frees_the_port():
    srv = ServerThread(echo_app).start()
    port = srv.port
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(request("POST", "/x", b"{}", close=False))
    assert read_answer(conn)[0] == 200
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 4
    assert not srv.running
    conn.settimeout(5)
    assert read_until_close(conn) == b""  # closed by the server, not answered
    conn.close()
    srv.stop()  # idempotent
    again = ServerThread(echo_app, port=port).start()  # the port is free
    try:
        assert one_answer(exchange(port, request("POST", "/x", b"{}")))[0] == 200
    finally:
        again.stop()


def test_oldest_stalled_connection_is_shed_for_a_newcomer():
    srv = ServerThread(echo_app, limits=Limits(max_connections=8)).start()
    stalled = []
    try:
        for _ in range(8):
            conn = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            conn.sendall(b"POST /x HTTP/1.1\r\n")  # and nothing more
            stalled.append(conn)
        time.sleep(0.3)
        status, _doc = one_answer(exchange(srv.port, request("POST", "/x", b"{}")))
        assert status == 200
        assert srv.connections <= 8
        shed = 0
        for conn in stalled:
            conn.settimeout(0.2)
            with contextlib.suppress(TimeoutError):
                shed += conn.recv(65536).startswith(b"HTTP/1.1 503")
        assert shed >= 1
    finally:
        for conn in stalled:
            conn.close()
        srv.stop()


def test_runs_on_its_own_thread_and_loop():
    import asyncio

    srv = ServerThread(echo_app, name="t-http").start()
    try:
        assert srv.thread is not threading.current_thread()
        assert srv.thread.name == "t-http" and srv.thread.daemon
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()  # nothing was started on the caller's thread
    finally:
        srv.stop()


# --- the receiver on the strict server ------------------------------------------------------

import dataclasses  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402

import requests  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import suno_nb.session as session  # noqa: E402
from suno_nb.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_headers  # noqa: E402

from .conftest import post, seed_bytes  # noqa: E402

KEY = "whsec-strict-test-key-0123456789"
SEED = seed_bytes("seed_success.json")


def _target(rx) -> str:
    return rx.local_url.split(str(rx.port), 1)[1]


def _rows(rx) -> list[dict]:
    return rx.store.query("SELECT * FROM deliveries ORDER BY id")


@pytest.fixture
def srx(tmp_path):
    receiver = session.start_receiver(
        tmp_path / "strict.sqlite3", tunnel=None, poll=False, socket_timeout=1.0
    )
    yield receiver
    session.stop_receiver()


def test_chunked_callback_is_stored(srx):
    status, doc = one_answer(exchange(srx.port, chunked("POST", _target(srx), SEED)))
    assert (status, doc) == (200, {"code": 200, "msg": "success"})
    assert len(srx.frame()) == 1


@pytest.mark.parametrize(
    "name",
    ["gzip-chunked", "cl-and-te", "two-lengths", "plus-length", "underscore-length", "bare-cr"],
)
def test_bad_framing_on_the_callback_path_is_4xx_with_a_row(srx, name):
    target = _target(srx)
    data = {
        "gzip-chunked": chunked("POST", target, SEED, te="gzip, chunked"),
        "cl-and-te": chunked("POST", target, SEED, extra=f"Content-Length: {len(SEED)}\r\n"),
        "two-lengths": request("POST", target, SEED).replace(
            b"Content-Length:", b"Content-Length: 5\r\nContent-Length:"
        ),
        "plus-length": request("POST", target, SEED, {"Content-Length": f"+{len(SEED)}"}),
        "underscore-length": request(
            "POST", target, SEED, {"Content-Length": f"{len(SEED)}_0"[: len(str(len(SEED)))]}
        ).replace(b"Content-Length: ", b"Content-Length: 1_"),
        "bare-cr": request("POST", target, SEED, {"X-Odd": "a\rb"}),
    }[name]
    status, doc = one_answer(exchange(srx.port, data))
    assert 400 <= status < 500, doc
    rows = _rows(srx)
    assert [(r["verdict"], r["status"]) for r in rows] == [("rejected", status)]
    assert rows[0]["path"] in (None, "/callback/…")
    assert srx.frame().empty


def test_content_length_with_chunked_is_one_400_and_nothing_smuggled(srx):
    target = _target(srx)
    smuggled = request("POST", target, SEED)  # a whole valid callback hidden in the body
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    data = (
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode() + body
    got = answers(exchange(srx.port, data))
    assert [g[0] for g in got] == [400]
    assert srx.frame().empty and srx.tasks().empty
    assert [r["status"] for r in _rows(srx)] == [400]


def test_head_and_wrong_methods(srx):
    raw = exchange(srx.port, request("HEAD", _target(srx)))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405") and body == b""
    status, _doc = one_answer(exchange(srx.port, request("DELETE", _target(srx))))
    assert status == 405
    assert [r["status"] for r in _rows(srx)] == [405, 405]


def test_every_error_answer_is_json(srx):
    target = _target(srx)
    cases = [
        request("POST", "/nope", SEED),
        request("GET", target),
        request("POST", target, b"x" * (1024 * 1024 + 1)),
        request("POST", target, SEED, {"Content-Type": "text/plain"}),
        request("POST", target, b"{"),
        request("POST", target, SEED, {"X-Big": "a" * 20000}),
        b"POST " + b"/a" * 10000 + b" HTTP/1.1\r\n\r\n",
        b"POST / HTTP/3.0\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ]
    statuses = [one_answer(exchange(srx.port, data))[0] for data in cases]
    assert statuses == [404, 405, 413, 415, 400, 431, 431, 400, 400]
    assert sorted(r["status"] for r in _rows(srx)) == sorted(statuses)


EDGE_BODIES = {
    "lone surrogate": SEED.replace(b'"msg": "', b'"msg": "\\ud800', 1),
    "code 2**63": SEED.replace(b'"code": 200', b'"code": 9223372036854775808', 1),
    "5000-digit integer": SEED.replace(b'"code": 200', b'"code": ' + b"9" * 5000, 1),
    "duration 1e400": SEED.replace(b'"duration": ', b'"duration": 1e400, "x": ', 1),
    "NaN": SEED.replace(b'"code": 200', b'"code": NaN', 1),
    "Infinity": SEED.replace(b'"code": 200', b'"code": -Infinity', 1),
    "deep nesting": b'{"code": 200, "msg": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "surrogate task_id": SEED.replace(b'"task_id": "', b'"task_id": "\\udfff', 1),
}


@pytest.mark.parametrize("name", list(EDGE_BODIES))
def test_named_edge_bodies_are_400_with_a_row(srx, name):
    body = EDGE_BODIES[name]
    assert body != SEED
    r = post(srx.url, body)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["code"] == 400 and r.json()["msg"]
    assert [(x["status"], x["verdict"]) for x in _rows(srx)] == [(400, "rejected")]


def test_surrogate_task_id_with_a_key_set_is_answered(tmp_path):
    rx = session.start_receiver(tmp_path / "k.sqlite3", tunnel=None, poll=False, hmac_key=KEY)
    body = EDGE_BODIES["surrogate task_id"]
    r = post(rx.url, body, signature_headers(KEY, "x"))
    assert r.status_code in (400, 401)
    assert len(_rows(rx)) == 1


# --- the fuzz: random bytes and structured JSON ------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "\udfff", "complete", "error", "text", "first"])
)
json_values = st.recursive(
    json_leaf,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=16,
)
callback_like = st.fixed_dictionaries(
    {
        "code": st.one_of(st.just(200), json_leaf),
        "msg": json_values,
        "data": st.fixed_dictionaries(
            {
                "callbackType": st.one_of(
                    st.sampled_from(["complete", "error", "first"]), json_leaf
                ),
                "task_id": st.one_of(st.text(min_size=1, max_size=16), json_leaf),
                "data": st.one_of(
                    st.lists(
                        st.fixed_dictionaries(
                            {"id": st.text(min_size=1, max_size=8), "duration": json_leaf}
                        ),
                        max_size=3,
                    ),
                    json_values,
                ),
            }
        ),
    }
)


def _dump(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


def test_fuzz_only_200_or_4xx_every_request_answered_every_rejection_a_row(tmp_path):
    rx = session.start_receiver(
        tmp_path / "fuzz.sqlite3", tunnel=None, poll=False, hmac_key=KEY, socket_timeout=1.0
    )
    sender = requests.Session()
    seen = {"ok": 0, "rejected": 0}
    now = int(time.time())

    @settings(
        max_examples=1200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(
        body=st.one_of(st.binary(max_size=400), json_values.map(_dump), callback_like.map(_dump)),
        ts=st.one_of(
            st.just(str(now)),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=8),
            st.integers().map(str),
        ),
        sign_task=st.one_of(st.none(), st.text(max_size=8)),
    )
    def one(body: bytes, ts: str, sign_task: str | None) -> None:
        try:
            task = json.loads(body)["data"]["task_id"]
        except Exception:
            task = None
        headers = {TIMESTAMP_HEADER: ts}
        if isinstance(task, str) and sign_task is None:
            with contextlib.suppress(UnicodeEncodeError):
                headers.update(signature_headers(KEY, task, now))
        elif sign_task is not None:
            headers[SIGNATURE_HEADER] = signature_headers(KEY, sign_task, now)[SIGNATURE_HEADER]
        r = post(rx.url, body, headers, sender)
        assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)
        doc = r.json()
        assert doc["code"] == r.status_code and isinstance(doc["msg"], str)
        seen["ok" if r.status_code == 200 else "rejected"] += 1

    one()
    total = seen["ok"] + seen["rejected"]
    assert total >= 1000
    counts = rx.store.query(
        "SELECT sum(verdict = 'rejected') AS rejected, count(*) AS n FROM deliveries"
    )[0]
    assert counts["rejected"] == seen["rejected"]  # every rejection has its row
    assert counts["n"] == total  # and every accepted one (duplicates included)


def test_random_raw_bytes_are_always_answered(srx):
    answered = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.binary(min_size=1, max_size=200))
    def one(data: bytes) -> None:
        raw = exchange(srx.port, data + b"\r\n\r\n", timeout=10)
        status, _doc = one_answer(raw)
        assert 400 <= status < 500 or status == 405
        answered.append(status)

    one()
    assert len(answered) >= 300
    srx.flush()
    assert len(_rows(srx)) >= len([s for s in answered if s != 408])


# --- keep-alive across stop() and a re-run on the same port -----------------------------------


def test_keepalive_connection_is_closed_by_stop_and_by_a_rerun(tmp_path):
    rx = session.start_receiver(tmp_path / "a.sqlite3", tunnel=None, poll=False)
    port, target = rx.port, _target(rx)
    held = socket.create_connection(("127.0.0.1", port), timeout=10)
    held.sendall(request("POST", target, SEED, close=False))
    assert read_answer(held)[0] == 200
    # A re-run with other arguments on the same port replaces the receiver.
    rx2 = session.start_receiver(tmp_path / "b.sqlite3", tunnel=None, poll=False, port=port)
    assert rx2 is not rx and not rx.running and rx2.port == port
    try:
        held.sendall(request("POST", target, SEED, close=False))
        got = read_until_close(held)
    except ConnectionError:
        got = b""
    assert got == b""  # closed, never answered (no 503 from the old receiver)
    held.close()
    assert post(rx2.url, SEED).status_code == 200  # the new one answers on the same port
    held = socket.create_connection(("127.0.0.1", port), timeout=10)
    held.sendall(request("POST", _target(rx2), SEED, close=False))
    assert read_answer(held)[0] == 200
    session.stop_receiver()
    held.settimeout(5)
    with contextlib.suppress(ConnectionError):
        assert read_until_close(held) == b""
    held.close()


# --- the store going away -----------------------------------------------------------------------


def test_store_directory_removed_means_503_never_200(tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    rx = session.start_receiver(folder / "rx.sqlite3", tunnel=None, poll=False)
    assert post(rx.url, SEED).status_code == 200
    shutil.rmtree(folder)
    statuses = []
    for n in range(20):
        body = SEED.replace(b'"task_id": "', f'"task_id": "gone{n}-'.encode(), 1)
        statuses.append(post(rx.url, body).status_code)
    assert set(statuses) == {503}
    assert "UNAVAILABLE" in repr(rx)


# --- signatures bound to the body ---------------------------------------------------------------


@pytest.fixture
def signed(tmp_path):
    rx = session.start_receiver(tmp_path / "s.sqlite3", tunnel=None, poll=False, hmac_key=KEY)
    yield rx
    session.stop_receiver()


def _task_of(body: bytes) -> str:
    return json.loads(body)["data"]["task_id"]


def test_replayed_signature_with_a_forged_body_is_401_and_nothing_stored(signed):
    failure = seed_bytes("seed_failure_error.json")
    task = _task_of(failure)
    headers = signature_headers(KEY, task)
    assert post(signed.url, failure, headers).status_code == 200

    def state() -> list:
        return signed.store.query("SELECT task_id, state, code, callback_type FROM tasks")

    before = (state(), len(signed.frame()), len(_rows(signed)))
    forged = SEED.replace(_task_of(SEED).encode(), task.encode())  # flips it to succeeded
    r = post(signed.url, forged, headers)
    assert r.status_code == 401
    assert r.json()["msg"] == "signature reused with a different body"
    assert state() == before[0]
    assert len(signed.frame()) == before[1] == 0
    rows = _rows(signed)
    assert len(rows) == before[2] + 1 and rows[-1]["verdict"] == "rejected"
    exact = post(signed.url, failure, headers)  # the same delivery again: a duplicate
    assert exact.status_code == 200
    assert _rows(signed)[-1]["verdict"] == "duplicate"


@pytest.mark.parametrize(
    "ts", ["9" * 400, "1" * 5000, "1e9", "+1700000000", "1_700_000_000", "١٧٠٠٠٠٠٠٠٠", "-5", ""]
)
def test_timestamps_that_are_not_sane_integers_are_401(signed, ts):
    task = _task_of(SEED)
    signature = signature_headers(KEY, task)[SIGNATURE_HEADER]
    data = request("POST", _target(signed), SEED, {SIGNATURE_HEADER: signature})
    stamp = f"\r\n{TIMESTAMP_HEADER}: {ts}\r\n\r\n".encode()  # UTF-8 on the wire
    data = data.replace(b"\r\n\r\n", stamp, 1)
    status, doc = one_answer(exchange(signed.port, data))
    assert status == 401, doc
    assert "Unix time" in doc["msg"]
    assert signed.frame().empty


# --- secrets ------------------------------------------------------------------------------------


def test_debug_logs_never_contain_the_path_token(srx, caplog):
    token = srx.local_url.rsplit("/", 1)[1]
    caplog.set_level(logging.DEBUG)
    target = _target(srx)
    post(srx.url, SEED)
    post(srx.url + "x", SEED)
    post(srx.url[:-1], SEED)
    requests.get(srx.url, timeout=5)
    exchange(srx.port, chunked("POST", target, SEED, te="gzip, chunked"))
    exchange(srx.port, request("POST", target, b"x" * (1024 * 1024 + 10)))
    exchange(srx.port, request("POST", target, SEED, {"X-Big": "a" * 20000}))
    srx.stop()
    ours = ("suno_nb", "uvicorn", "asyncio")  # not the test's own HTTP client
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(ours))
    assert "/callback/" in text  # the requests were logged, masked
    assert token not in text and token[:-1] not in text
    assert not any(token in json.dumps(r) for r in _rows_after_stop(srx))


def _rows_after_stop(rx) -> list[dict]:
    from suno_nb.store import Store

    store = Store(rx.store.path)
    try:
        return store.query("SELECT path, headers, reason FROM deliveries")
    finally:
        store.close()


def test_credential_like_headers_are_not_stored(signed):
    task = _task_of(SEED)
    sent = {
        "Authorization": "Bearer a",
        "Cookie": "s=1",
        "Api-Key": "k",
        "X-Auth-Token": "t",
        "X-Client-Secret": "s",
        "X-Password": "p",
        "Proxy-Authorization": "Basic x",
        "X-Trace": "kept",
        **signature_headers(KEY, task),
    }
    assert post(signed.url, SEED, sent).status_code == 200
    stored = json.loads(_rows(signed)[0]["headers"])
    names = {k.lower() for k in stored}
    assert "x-trace" in names
    assert {"x-webhook-timestamp", "x-webhook-signature"} <= names
    for name in ("authorization", "cookie", "api-key", "x-auth-token", "x-client-secret"):
        assert name not in names
    assert not {"x-password", "proxy-authorization"} & names


def test_config_asdict_and_repr_expose_no_secret(tmp_path):
    rx = session.start_receiver(
        tmp_path / "c.sqlite3", tunnel=None, poll=False, hmac_key=KEY, authtoken="ngrok-tok-123456"
    )
    for text in (repr(rx.config), str(dataclasses.asdict(rx.config)), repr(rx)):
        assert KEY not in text and "ngrok-tok-123456" not in text
    assert rx.config.hmac_key == KEY  # still usable as the key


def test_signature_memory_survives_a_restart(tmp_path):
    path = tmp_path / "r.sqlite3"
    rx = session.start_receiver(path, tunnel=None, poll=False, hmac_key=KEY)
    failure = seed_bytes("seed_failure_error.json")
    task = _task_of(failure)
    headers = signature_headers(KEY, task)
    assert post(rx.url, failure, headers).status_code == 200
    session.stop_receiver()
    rx = session.start_receiver(path, tunnel=None, poll=False, hmac_key=KEY)  # a new kernel
    forged = SEED.replace(_task_of(SEED).encode(), task.encode())
    r = post(rx.url, forged, headers)
    assert (r.status_code, r.json()["msg"]) == (401, "signature reused with a different body")
    assert rx.frame().empty


def test_no_process_wide_settings_change(tmp_path):
    import signal
    import sys

    def snapshot():
        names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")
        loggers = [
            (
                logging.getLogger(n).level,
                list(logging.getLogger(n).handlers),
                logging.getLogger(n).propagate,
            )
            for n in names
        ]
        return (
            sys.getswitchinterval(),
            signal.getsignal(signal.SIGINT),
            signal.getsignal(signal.SIGTERM),
            logging.getLevelName(5),
            loggers,
        )

    before = snapshot()
    rx = session.start_receiver(tmp_path / "p.sqlite3", tunnel=None, poll=False)
    post(rx.url, SEED)
    exchange(rx.port, b"garbage\r\n\r\n")
    assert snapshot() == before
    session.stop_receiver()
    assert snapshot() == before


def test_wrong_path_answers_survive_large_bodies(srx):
    big = b"x" * (900 * 1024)
    with requests.Session() as s:
        r = s.post(srx.url + "nope", data=big, timeout=10)
        assert r.status_code == 404  # not reset by the body the app never read
        assert post(srx.url, SEED, session_=s).status_code == 200  # same connection, still fine
    # Chunked, so the length is unknown until the body is read.
    huge = chunked("POST", _target(srx) + "x", b"y" * (3 * 1024 * 1024))
    with socket.create_connection(("127.0.0.1", srx.port), timeout=10) as conn:
        with contextlib.suppress(OSError):
            conn.sendall(huge)
        got = b""
        with contextlib.suppress(OSError):
            got = read_until_close(conn)
    assert [a[0] for a in answers(got)] == [413]  # one answer, read before the reset
    assert [r["status"] for r in _rows(srx)] == [404, 200, 413]
