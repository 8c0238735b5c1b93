"""The strict HTTP server (suno_nb.server) byte by byte: framing, limits, deadlines, stop()."""

from __future__ import annotations

import json
import select
import socket
import threading

import pytest

from suno_nb.server import Limits, ProtocolError, ServerThread

from .conftest import wait_until
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
        limits=Limits(max_header_bytes=2048, max_body=4096, request_timeout=1.0),
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


def test_expect_100_continue_is_answered_before_the_body(server):
    body = b"y" * 100
    head = request("POST", "/x", body, {"Expect": "100-continue"}, close=False)[: -len(body)]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(head)
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += conn.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        conn.sendall(body)
        assert read_answer(conn) == (200, {"code": 200, "msg": "ok", "n": 100})


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
    data = request("POST", "/x", b"{}")
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        sent = 0
        for byte in data:  # one byte every 0.2 s: each arrives in time, the whole does not
            conn.sendall(bytes([byte]))
            sent += 1
            # pacing: the next byte in 0.2 s, unless the server has answered by then
            if select.select([conn], [], [], 0.2)[0]:
                break
        status, _doc = one_answer(read_until_close(conn))
    assert status == 408
    assert sent < len(data)  # the answer came while the request was still arriving
    assert [e.status for e in server.errors] == [408]


def test_app_exception_is_a_json_500(server):
    status, doc = one_answer(exchange(server.port, request("POST", "/boom", b"{}")))
    assert status == 500 and doc["msg"] == "internal error"


def test_no_log_record_reaches_stderr(server, capfd):
    for data in (b"garbage\r\n\r\n", request("POST", "/x", b"a" * 5000), request("POST", "/boom")):
        exchange(server.port, data)
    assert capfd.readouterr().err == ""


def test_stop_closes_idle_keepalive_connections_and_frees_the_port():
    # An idle connection may stay open for an hour: stop() must close it, not wait for it.
    srv = ServerThread(echo_app, limits=Limits(keepalive=3600)).start()
    port = srv.port
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(request("POST", "/x", b"{}", close=False))
    assert read_answer(conn)[0] == 200
    thread = srv.thread
    srv.stop(timeout=30)  # the join's bound is an anti-hang guard
    assert not thread.is_alive()  # it ended although the keep-alive had an hour left
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
    # No request deadline within the test: only shedding can answer a stalled connection.
    srv = ServerThread(echo_app, limits=Limits(max_connections=8, request_timeout=3600)).start()
    stalled = []
    try:
        for _ in range(8):
            conn = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            conn.sendall(b"POST /x HTTP/1.1\r\n")  # and nothing more
            stalled.append(conn)
        assert wait_until(lambda: srv.connections == 8)  # all eight are the server's
        status, _doc = one_answer(exchange(srv.port, request("POST", "/x", b"{}")))
        assert status == 200
        assert srv.connections <= 8
        answered, _, _ = select.select(stalled, [], [], 30)  # the shed ones hear at once
        assert answered
        assert all(conn.recv(65536).startswith(b"HTTP/1.1 503") for conn in answered)
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
