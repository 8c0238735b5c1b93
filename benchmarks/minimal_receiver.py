"""A calibration receiver: the least a durable receiver can do, on the same HTTP server.

Not project code and not a receiver anyone should use: it stands for the "calibration
prototype" issue 11 describes (uvicorn + httptools on one background thread, ONE SQLite
writer thread committing whatever is queued in one transaction, ``synchronous=FULL``), so
that :mod:`benchmarks.bench_ack` can say what this machine allows at all.  Per request it
reads the body, checks it is JSON (``json.loads``), stores the raw bytes in one table and
answers 200 after the COMMIT.  No validation of the callback, no deduplication, no tasks or
tracks, no rejected-request rows, no signatures: everything suno_nb's receiver adds on top.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections import deque
from typing import Any

from suno_nb.server import ServerThread, send_json

PATH = "/callback/minimal"


class MinimalReceiver:
    """``start()`` → the URL; callbacks land in ``raw(body)`` of ``path``."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, body BLOB)")
        self._queue: deque[tuple[bytes, asyncio.Future, asyncio.AbstractEventLoop]] = deque()
        self._cond = threading.Condition()
        threading.Thread(target=self._write, name="minimal-writer", daemon=True).start()
        self.http = ServerThread(self._app, name="minimal-receiver")

    def start(self) -> str:
        self.http.start()
        return f"http://127.0.0.1:{self.http.port}{PATH}"

    def count(self) -> int:
        return self._conn.execute("SELECT count(*) FROM raw").fetchone()[0]

    async def _app(self, scope: dict, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            json.loads(body)
        except ValueError:
            await send_json(send, 400, "not JSON")
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        with self._cond:
            self._queue.append((body, done, loop))
            self._cond.notify()
        await done
        await send_json(send, 200, "success")

    def _write(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue)
                batch = [self._queue.popleft() for _ in range(len(self._queue))]
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT INTO raw (body) VALUES (?)", [(b,) for b, _, _ in batch])
            self._conn.execute("COMMIT")
            loop = batch[0][2]
            loop.call_soon_threadsafe(_resolve, [done for _, done, _ in batch])


def _resolve(futures: list[asyncio.Future]) -> None:
    for done in futures:
        if not done.done():
            done.set_result(None)
