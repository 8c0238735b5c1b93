#!/usr/bin/env python3
"""A stand-in for ``cloudflared`` quick tunnels, enough for suno_nb to drive offline.

suno_nb runs it as::

    cloudflared tunnel --url http://127.0.0.1:PORT --metrics 127.0.0.1:M --no-autoupdate

and it behaves like cloudflared as far as suno_nb can tell: it prints the real banner shape
on stderr (the "Thank you for trying Cloudflare Tunnel" notice, the boxed
``https://<words>.trycloudflare.com`` URL, version and settings lines, "Registered tunnel
connection"), and serves on ``--metrics``: ``GET /quicktunnel`` → ``{"hostname": ...}``,
``GET /ready`` → 200 ``{"status": 200, "readyConnections": 1, ...}`` (503 before),
``GET /metrics``.  The public hostname cannot be reached offline, so the fake also runs a
loopback forwarder (the fake ngrok agent's reverse proxy: it adds ``X-Forwarded-For``,
``X-Forwarded-Proto: https`` and ``X-Forwarded-Host`` and forwards to ``--url``) and tells
tests where it listens: ``GET /fake/forwarder`` → ``{"url": "http://127.0.0.1:P"}`` on the
metrics server, and a ``fake forwarder listening on`` stderr line.

Knobs (environment variables):

- ``FAKE_CLOUDFLARED_FAIL=network``: fail like a machine without internet (the real
  "failed to request quick Tunnel ... no such host" lines) and exit 1;
  ``FAKE_CLOUDFLARED_FAIL=crash``: a non-network fatal error, exit 1.
- ``FAKE_CLOUDFLARED_HANG=1``: request the tunnel but never get a connection (``/ready``
  stays 503, no URL anywhere).
- ``FAKE_CLOUDFLARED_BANNER_ONLY=1``: ``/quicktunnel`` answers 404, so the URL must be read
  from the banner.
- ``FAKE_CLOUDFLARED_HOSTNAME``: the hostname to report (default: four random words).
- ``FAKE_CLOUDFLARED_CLIENT_IP``: the address the forwarder reports in ``X-Forwarded-For``.

SIGTERM and SIGINT end it cleanly.  :func:`install` writes an executable ``cloudflared``
wrapper that runs this file with a given interpreter.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import sys
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fake_ngrok"))
from fake_ngrok import _ProxyHandler, write_wrapper  # the fake agent's forwarding

VERSION = "2025.8.1"
WORDS = ("river", "piano", "quiet", "maple", "orbit", "velvet", "canyon", "amber", "lunar")
_STOP = threading.Event()
_ERR_LOCK = threading.Lock()


def say(level: str, text: str) -> None:
    """One cloudflared log line on stderr (``<time> INF text``); ignore a closed stderr."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with _ERR_LOCK, contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{now} {level} {text}\n")
        sys.stderr.flush()


def _options(argv: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    it = iter(argv)
    for arg in it:
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            options[name] = value if eq else ("" if name == "--no-autoupdate" else next(it, ""))
    return options


class _Metrics(BaseHTTPRequestHandler):
    server_version = "cloudflared-fake"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, payload: Any, kind: str = "application/json") -> None:
        data = (json.dumps(payload) if kind == "application/json" else payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.server.state  # type: ignore[attr-defined]
        if self.path == "/quicktunnel":
            if os.environ.get("FAKE_CLOUDFLARED_BANNER_ONLY") == "1":
                return self._reply(404, "404 page not found\n", "text/plain")
            return self._reply(200, {"hostname": state.hostname if state.ready else ""})
        if self.path == "/ready":
            ready = state.ready
            body = {"status": 200 if ready else 503, "readyConnections": int(ready)}
            body["connectorId"] = state.connector
            return self._reply(200 if ready else 503, body)
        if self.path == "/fake/forwarder":
            return self._reply(200, {"url": state.forwarder})
        if self.path == "/metrics":
            return self._reply(
                200, f"cloudflared_tunnel_ha_connections {int(state.ready)}\n", "text/plain"
            )
        return self._reply(404, "404 page not found\n", "text/plain")


def _forwarder(upstream: str) -> ThreadingHTTPServer:
    """The fake ngrok agent's reverse proxy, pointed at ``upstream``."""
    agent = SimpleNamespace(
        client_ip=os.environ.get("FAKE_CLOUDFLARED_CLIENT_IP", "198.51.100.77"),
        record=lambda entry: None,
        counter=itertools.count(1),
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
    server.daemon_threads = True
    server.endpoint = SimpleNamespace(  # type: ignore[attr-defined]
        agent=agent, upstream=upstream, conns=0, name="quick-tunnel"
    )
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return server


def _tunnel(options: dict[str, str]) -> int:
    upstream = options.get("--url") or "http://localhost:8080"
    metrics = options.get("--metrics") or "127.0.0.1:0"
    fail = os.environ.get("FAKE_CLOUDFLARED_FAIL", "").strip()
    hang = os.environ.get("FAKE_CLOUDFLARED_HANG") == "1"
    hostname = os.environ.get("FAKE_CLOUDFLARED_HOSTNAME") or (
        "-".join(random.sample(WORDS, 4)) + ".trycloudflare.com"
    )
    say(
        "INF",
        "Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a "
        "quick way to experiment and try it out. However, be aware that these account-less "
        "Tunnels have no uptime guarantee, are subject to the Cloudflare Online Services Terms "
        "of Use (https://www.cloudflare.com/website-terms/), and Cloudflare reserves the right "
        "to investigate your use of Tunnels for violations of such terms. If you intend to use "
        "Tunnels in production you should use a pre-created named tunnel by following: "
        "https://developers.cloudflare.com/cloudflare-one/connections/connect-apps",
    )
    say("INF", "Requesting new quick Tunnel on trycloudflare.com...")
    if fail == "network":
        err = (
            'Post "https://api.trycloudflare.com/tunnel": dial tcp: lookup '
            "api.trycloudflare.com on 127.0.0.53:53: no such host"
        )
        say("ERR", f'Error requesting new quick Tunnel error="{err}"')
        sys.stderr.write(f"failed to request quick Tunnel: {err}\n")
        return 1
    if fail:
        say("ERR", 'Couldn\'t start tunnel error="unexpected error: the fake was told to crash"')
        return 1
    state = SimpleNamespace(hostname=hostname, ready=False, connector=str(uuid.uuid4()))
    forwarder = _forwarder(upstream)
    state.forwarder = f"http://127.0.0.1:{forwarder.server_address[1]}"
    if not hang:
        created = "Your quick Tunnel has been created! Visit it at (it may take some time to "
        created += "be reachable):"
        width = len(created) + 4
        for text in ("+" + "-" * width + "+", f"|  {created}  |"):
            say("INF", text)
        say("INF", "|  " + f"https://{hostname}".ljust(width - 2) + "|")
        say("INF", "+" + "-" * width + "+")
    say(
        "INF",
        "Cannot determine default configuration path. No file [config.yml config.yaml] in "
        "[~/.cloudflared ~/.cloudflare-warp ~/cloudflare-warp /etc/cloudflared "
        "/usr/local/etc/cloudflared]",
    )
    say("INF", f"Version {VERSION} (Checksum fake)")
    say(
        "INF",
        f"Settings: map[ha-connections:1 metrics:{metrics} no-autoupdate:true "
        f"protocol:quic url:{upstream}]",
    )
    host, _, port = metrics.rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port or 0)), _Metrics)
    server.daemon_threads = True
    server.state = state  # type: ignore[attr-defined]
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    say("INF", f"Starting metrics server on {host}:{server.server_address[1]}/metrics")
    say("INF", f"fake forwarder listening on {state.forwarder}")
    if not hang:
        state.ready = True
        say(
            "INF",
            f"Registered tunnel connection connIndex=0 connection={uuid.uuid4()} event=0 "
            "ip=198.41.192.7 location=ams01 protocol=quic",
        )
    while not _STOP.wait(0.2):
        pass
    say("INF", "Initiating graceful shutdown due to signal terminated ...")
    server.shutdown()
    forwarder.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: _STOP.set())
    if argv[:1] in (["--version"], ["version"]):
        print(f"cloudflared version {VERSION} (built 2025-08-01-1200 UTC)")
        return 0
    if argv[:1] == ["tunnel"]:
        return _tunnel(_options(argv[1:]))
    print(f"ERROR: the fake cloudflared does not implement {' '.join(argv)!r}", file=sys.stderr)
    return 1


def install(dest_dir: str | os.PathLike[str], python: str | None = None) -> str:
    """Write an executable ``cloudflared`` wrapper into ``dest_dir`` and return its path."""
    return write_wrapper(Path(dest_dir) / "cloudflared", __file__, python)


if __name__ == "__main__":
    code = main()
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)
