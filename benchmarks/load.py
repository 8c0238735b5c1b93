"""A multi-process, keep-alive, closed-loop HTTP load generator for callback receivers.

``run_load(url, senders=N, procs=P, ...)`` starts P worker processes (``multiprocessing``
spawn); each drives N/P persistent raw-socket connections from ONE thread with a
``selectors`` loop, so no client-side GIL contention distorts the numbers.  Each connection
is a closed-loop sender: it POSTs a seed-shaped callback, reads the full response, records
the latency (``time.perf_counter`` from just before ``send`` until the last byte of the
answer, measured client-side), and sends the next one.  Every task id is distinct, except
that with ``dup_fraction`` that fraction of the sends repeats a recently sent task (like the
service's retries).  Every loop is bounded by a duration and a request budget; a request
unanswered for ``request_timeout`` seconds counts as a timeout.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import selectors
import socket
import time
from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .common import BodyMaker

SLOW_S = 0.5  # an answer slower than this counts as a stall


@dataclass
class LoadResult:
    """What the senders saw, merged over all worker processes."""

    senders: int
    procs: int
    latencies: np.ndarray  # seconds, one per answered request in the measured window
    ok: int  # answered 200 in the measured window
    non_200: dict[int, int]
    timeouts: int
    reconnects: int
    wall_s: float
    acked_total: int  # 200s including warm-up (what the store must hold)
    acked_tasks: int  # distinct task ids acknowledged, including warm-up
    sent_total: int
    sent_tasks: int  # distinct task ids sent, including warm-up
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def stalls(self) -> int:
        return int((self.latencies > SLOW_S).sum())


class _Lane:
    """One keep-alive connection and its closed loop."""

    __slots__ = ("buf", "dest", "sock", "stale", "t0", "task")

    def __init__(self, dest: tuple[str, int]) -> None:
        self.dest = dest
        self.sock = self._connect()
        self.buf = b""
        self.t0 = 0.0
        self.task = ""
        self.stale = False  # the server closed it: reconnect before the next request

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.dest, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        return sock

    def reconnect(self) -> None:
        try:
            self.sock.close()
        finally:
            self.sock = self._connect()
            self.buf = b""
            self.stale = False


def _parse(buf: bytes) -> tuple[int, int, bool] | None:
    """(status, bytes consumed, server closes) once ``buf`` holds a whole answer."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].lower()
    status = int(head[9:12])
    length = 0
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 2)
        length = int(head[i + 17 : j if j >= 0 else len(head)])
    total = end + 4 + length
    if len(buf) < total:
        return None
    return status, total, b"\r\nconnection: close" in head


class _Tasks:
    """Task ids to send: new ones, or (``dup_fraction`` of the sends) a repeat of one of the
    last 1,000 sent."""

    def __init__(self, prefix: str, seed: int, dup_fraction: float = 0.0) -> None:
        self.prefix = prefix
        self.dup_fraction = dup_fraction
        self.rng = random.Random(seed)
        self.n = 0
        self.recent: deque[str] = deque(maxlen=1000)

    def next(self) -> str:
        if self.dup_fraction and self.recent and self.rng.random() < self.dup_fraction:
            return self.rng.choice(self.recent)
        self.n += 1
        task = f"{self.prefix}{self.n:08d}"
        self.recent.append(task)
        return task


def _worker(
    url: str,
    index: int,
    lanes_n: int,
    duration: float,
    budget: int,
    prefix: str,
    warmup: int,
    request_timeout: float,
    barrier: Any,
    out: Any,
    dup_fraction: float = 0.0,
) -> None:
    """One load process: ``lanes_n`` keep-alive lanes in one selectors loop."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path
    maker = BodyMaker()
    tasks = _Tasks(f"{prefix}p{index:02d}-", seed=index, dup_fraction=dup_fraction)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        "User-Agent: suno-nb-bench\r\nContent-Length: "
    ).encode()

    def request(task: str) -> bytes:
        body = maker.body(task)
        return head + str(len(body)).encode() + b"\r\n\r\n" + body

    errors: list[str] = []
    acked_tasks: set[str] = set()
    acked_total = sent_total = 0
    lanes = [_Lane((host, port)) for _ in range(lanes_n)]

    # Warm-up (not measured): each lane sends a few requests, blocking.
    for lane in lanes:
        for _ in range(warmup):
            task = tasks.next()
            lane.sock.sendall(request(task))
            sent_total += 1
            lane.buf = b""
            lane.sock.settimeout(request_timeout)
            try:
                while (parsed := _parse(lane.buf)) is None:
                    data = lane.sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed during warm-up")
                    lane.buf += data
            except (OSError, ConnectionError) as exc:
                errors.append(f"warm-up: {exc!r}")
                lane.reconnect()
                continue
            finally:
                lane.sock.settimeout(None)
            status, used, closes = parsed
            lane.buf = lane.buf[used:]
            if status == 200:
                acked_total += 1
                acked_tasks.add(task)
            if closes:
                lane.reconnect()

    barrier.wait(timeout=120)
    lat = array("d")
    non_200: dict[int, int] = {}
    timeouts = reconnects = 0
    sel = selectors.DefaultSelector()
    t_start = time.perf_counter()
    deadline = t_start + duration
    sent = 0

    def fire(lane: _Lane) -> None:
        nonlocal sent, sent_total
        lane.task = tasks.next()
        data = request(lane.task)
        lane.t0 = time.perf_counter()
        if lane.stale:  # a sender whose connection was closed pays for the new one
            lane.reconnect()
        lane.sock.sendall(data)
        sent += 1
        sent_total += 1

    active = 0
    for lane in lanes:
        fire(lane)
        sel.register(lane.sock, selectors.EVENT_READ, lane)
        active += 1
    while active:
        now = time.perf_counter()
        if now > deadline + request_timeout + 5:
            break  # hard bound
        events = sel.select(timeout=0.25)
        now = time.perf_counter()
        if not events:
            for key in list(sel.get_map().values()):
                lane = key.data
                if now - lane.t0 > request_timeout:
                    timeouts += 1
                    sel.unregister(lane.sock)
                    active -= 1
                    errors.append(f"timeout after {request_timeout} s")
            continue
        for key, _mask in events:
            lane = key.data
            try:
                data = lane.sock.recv(65536)
            except OSError as exc:
                data = b""
                errors.append(repr(exc))
            if not data:
                sel.unregister(lane.sock)
                reconnects += 1
                lane.stale = True
                if time.perf_counter() < deadline and sent < budget:
                    fire(lane)  # the lost request is re-sent as a new one
                    sel.register(lane.sock, selectors.EVENT_READ, lane)
                else:
                    active -= 1
                continue
            lane.buf += data
            parsed = _parse(lane.buf)
            if parsed is None:
                continue
            t1 = time.perf_counter()
            status, used, closes = parsed
            lane.buf = lane.buf[used:]
            lat.append(t1 - lane.t0)
            if status == 200:
                acked_total += 1
                acked_tasks.add(lane.task)
            else:
                non_200[status] = non_200.get(status, 0) + 1
            if closes:
                reconnects += 1
                lane.stale = True
            if t1 < deadline and sent < budget:
                if lane.stale:
                    sel.unregister(lane.sock)
                    fire(lane)
                    sel.register(lane.sock, selectors.EVENT_READ, lane)
                else:
                    fire(lane)
            else:
                sel.unregister(lane.sock)
                active -= 1
    t_end = time.perf_counter()
    for lane in lanes:
        lane.sock.close()
    out.put(
        {
            "index": index,
            "lat": lat.tobytes(),
            "non_200": non_200,
            "timeouts": timeouts,
            "reconnects": reconnects,
            "t_start": t_start,
            "t_end": t_end,
            "acked_total": acked_total,
            "acked_tasks": sorted(acked_tasks),
            "sent_total": sent_total,
            "sent_tasks": tasks.n,
            "errors": errors[:20],
        }
    )


def run_load(
    url: str,
    *,
    senders: int,
    procs: int | None = None,
    duration: float = 5.0,
    max_requests: int = 200_000,
    prefix: str = "bench-",
    warmup: int = 3,
    request_timeout: float = 10.0,
    on_start: Any = None,
    dup_fraction: float = 0.0,
) -> LoadResult:
    """Drive ``url`` with ``senders`` keep-alive closed-loop senders from ``procs`` processes.

    ``on_start`` (optional) is called right after all workers are connected and released.
    """
    procs = procs or min(senders, 2)
    procs = max(1, min(procs, senders))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs + 1)
    out = ctx.Queue()
    per_proc = [senders // procs + (1 if i < senders % procs else 0) for i in range(procs)]
    budget = max(1, max_requests // procs)
    workers = [
        ctx.Process(
            target=_worker,
            args=(
                url,
                i,
                n,
                duration,
                budget,
                prefix,
                warmup,
                request_timeout,
                barrier,
                out,
                dup_fraction,
            ),
            name=f"bench-load-{i}",
            daemon=True,
        )
        for i, n in enumerate(per_proc)
    ]
    for w in workers:
        w.start()
    results: list[dict[str, Any]] = []
    try:
        barrier.wait(timeout=180)
        if on_start is not None:
            on_start()
        limit = time.monotonic() + duration + request_timeout + 60
        while len(results) < procs and time.monotonic() < limit:
            try:
                results.append(out.get(timeout=1.0))
            except Exception:  # queue.Empty
                if not any(w.is_alive() for w in workers) and out.empty():
                    break
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.terminate()  # only our own workers
                w.join(timeout=5)
    if not results:
        raise RuntimeError("no load worker reported")
    lat = np.concatenate([np.frombuffer(r["lat"], dtype="float64") for r in results])
    non_200: dict[int, int] = {}
    for r in results:
        for k, v in r["non_200"].items():
            non_200[k] = non_200.get(k, 0) + v
    wall = max(r["t_end"] for r in results) - min(r["t_start"] for r in results)
    tasks: set[str] = set()
    for r in results:
        tasks.update(r["acked_tasks"])
    return LoadResult(
        senders=senders,
        procs=procs,
        latencies=lat,
        ok=int(lat.size) - sum(non_200.values()),
        non_200=non_200,
        timeouts=sum(r["timeouts"] for r in results),
        reconnects=sum(r["reconnects"] for r in results),
        wall_s=wall,
        acked_total=sum(r["acked_total"] for r in results),
        acked_tasks=len(tasks),
        sent_total=sum(r["sent_total"] for r in results),
        sent_tasks=sum(r["sent_tasks"] for r in results),
        errors=[e for r in results for e in r["errors"]][:20],
    )
