"""The HTTP layer alone: why uvicorn + httptools (docs/architecture.md).

A trivial ASGI app (read the body, answer 200 JSON) served by uvicorn with httptools (the
receiver's :class:`suno_nb.server.ServerThread`, its strict protocol included) and with h11,
each in a fresh process, plus the seeds' Flask receiver; 16 keep-alive senders
(:func:`benchmarks.load.run_load`).  No storage: this isolates the server's own cost per
request, the ceiling of the ``ack`` benchmark.  No floor.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from typing import Any

from .common import free_port, ratio, summarize_ms, table, wait_for_port
from .load import run_load


async def _app(scope: dict, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    body = b'{"code": 200, "msg": "success"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _serve(kind: str, port: int, stop: Any) -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # Flask's banner: keep the tables clean
    if kind == "uvicorn+httptools (ServerThread)":
        from suno_nb.server import ServerThread

        srv = ServerThread(_app, port=port).start()
        stop.wait(300)
        srv.stop()
    elif kind == "uvicorn+h11":
        import asyncio

        import uvicorn

        config = uvicorn.Config(
            _app, port=port, http="h11", lifespan="off", log_config=None, access_log=False
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
        thread.start()
        stop.wait(300)
        server.should_exit = True
        thread.join(10)
    else:
        from . import flask_seed

        threading.Thread(target=flask_seed.serve, args=(port,), daemon=True).start()
        stop.wait(300)


def run(*, quick: bool = False) -> dict[str, Any]:
    duration = 1.5 if quick else 4.0
    ctx = mp.get_context("spawn")
    rows: list[list[Any]] = []
    out: dict[str, Any] = {}
    for kind in ("uvicorn+httptools (ServerThread)", "uvicorn+h11", "flask (seeds)"):
        port = free_port()
        stop = ctx.Event()
        proc = ctx.Process(target=_serve, args=(kind, port, stop), daemon=True)
        proc.start()
        wait_for_port(port)
        time.sleep(0.2)
        path = "/replace-section-callback" if kind.startswith("flask") else "/x"
        res = run_load(f"http://127.0.0.1:{port}{path}", senders=16, duration=duration)
        stop.set()
        proc.join(15)
        if proc.is_alive():
            proc.terminate()
        s = summarize_ms(res.latencies)
        out[kind] = {"throughput": res.throughput, **s}
    flask = out["flask (seeds)"]
    for kind, r in out.items():
        rows.append(
            [
                kind,
                r["throughput"],
                f"{ratio(r['throughput'], flask['throughput']):.2f}×",
                r["p50"],
                r["p99"],
                f"{ratio(r['p99'], flask['p99']):.2f}×",
                r["max"],
            ]
        )
    print(
        "### http: the server alone, trivial app, 16 keep-alive senders (÷ Flask, same run)\n\n"
        + table(
            ["server", "req/s", "÷ Flask", "p50 ms", "p99 ms", "p99 ÷ Flask", "max ms"],
            rows,
            digits=2,
        )
    )
    print()
    return out
