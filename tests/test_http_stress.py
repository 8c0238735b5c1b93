"""Stalled and trickling connections, and a receiver at ``ulimit -n 1024`` (loopback only).

Bounded loops; functional checks only (the machine is shared): no latency is asserted here.
The figures themselves are measured in benchmarks/bench_stall.py and reported in
docs/performance.md.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import psutil
import pytest

import suno_nb.session as session

from .conftest import post, seed_bytes, wait_until
from .rawhttp import one_answer, read_until_close
from .test_kill import _body, start_child

pytestmark = [pytest.mark.slow, pytest.mark.alone]  # CI runs them, one at a time

SEED = seed_bytes("seed_success.json")


def _open(port: int, n: int, first: bytes) -> list[socket.socket]:
    conns = []
    for _ in range(n):
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn.sendall(first)
        conns.append(conn)
    return conns


def _close(conns: list[socket.socket]) -> None:
    for conn in conns:
        with contextlib.suppress(OSError):
            conn.close()


@pytest.mark.parametrize("max_connections", [256, 2100])
def test_1000_stalled_and_1000_trickling_connections(tmp_path, max_connections):
    rx = session.start_receiver(
        tmp_path / "st.sqlite3",
        tunnel=None,
        poll=False,
        max_connections=max_connections,
        request_timeout=3600,  # no stalled connection ends on its own during the test
    )
    proc = psutil.Process()
    threads0, rss0 = threading.active_count(), proc.memory_info().rss
    target = rx.local_url.split(str(rx.port), 1)[1]
    head = f"POST {target} HTTP/1.1\r\nHost: x\r\n".encode()
    stalled = _open(rx.port, 1000, head)  # and nothing more, ever
    trickling = _open(rx.port, 1000, b"P")
    try:
        held = []  # connections the server held open when each valid callback was answered
        for round_ in range(6):  # one more byte on each trickling connection per round
            for conn in trickling:
                with contextlib.suppress(OSError):
                    conn.send(b"OST /x HTTP/1.1\r\nX-Slow: 1\r\n"[round_ : round_ + 1])
            assert post(rx.url, _body(round_)).status_code == 200
            held.append(rx.server.connections)
            time.sleep(0.2)  # pacing the trickle, not waiting for anything
        threads = threading.active_count() - threads0
        rss_mb = (proc.memory_info().rss - rss0) / 2**20
        # One server thread whatever the number of connections; memory stays small.
        assert threads <= 2, threads
        assert rss_mb < 150, rss_mb
        # Answered while the slow connections were still open: nothing had to end first
        # (with room for all of them, none was shed; with 256, only the cap's worth is kept).
        assert min(held) >= min(2000, max_connections - 2), held
        assert rx.server.connections <= max_connections + 2
        assert len(rx.frame()) == 6
    finally:
        _close(stalled + trickling)


def test_stalled_connections_end_at_the_request_deadline(tmp_path):
    rx = session.start_receiver(tmp_path / "d.sqlite3", tunnel=None, poll=False, request_timeout=1)
    conns = _open(rx.port, 50, b"POST /callback/x HTTP/1.1\r\nHost: x\r\n")
    try:
        for conn in conns:
            assert one_answer(read_until_close(conn))[0] == 408
    finally:
        _close(conns)
    assert rx.flush(30)
    assert {r["status"] for r in rx.store.query("SELECT status FROM deliveries")} == {408}


@pytest.mark.parametrize("max_connections", [256, 5000])
def test_ulimit_1024_with_1100_connections_no_spin(tmp_path, max_connections):
    """At ``ulimit -n 1024`` (the child only) with 1,100 connections open against it.

    With the default cap (256) the server sheds the oldest stalled connection for each
    newcomer, so it never runs out of descriptors and valid callbacks are answered.  With
    a cap above the limit, accept() fails with EMFILE: asyncio backs off (no CPU spin) and
    the receiver serves again as soon as descriptors are free.
    """
    child, url = start_child(
        tmp_path / "u.sqlite3", "--nofile", "1024", "--max-connections", str(max_connections)
    )
    port = int(url.split(":")[2].split("/")[0])
    conns: list[socket.socket] = []
    try:
        for _ in range(1100):
            conn = socket.socket()
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.connect(("127.0.0.1", port))
                conn.sendall(b"POST /callback/x HTTP/1.1\r\n")
            conns.append(conn)
        cpu = psutil.Process(child.pid).cpu_percent(interval=2.0)
        assert cpu < 60, cpu  # a spinning accept loop shows ~100 %
        if max_connections == 256:
            assert [post(url, _body(n)).status_code for n in range(10)] == [200] * 10
        _close(conns)
        conns = []

        def answered() -> bool:
            try:
                return post(url, _body(99)).status_code == 200
            except OSError:
                return False

        assert wait_until(answered)  # descriptors free again: valid callbacks are answered
    finally:
        _close(conns)
        child.stdin.close()
        try:
            child.wait(30)
        except Exception:
            child.kill()
        err = child.stderr.read()
    assert err == ""  # nothing reached stderr in the child either
