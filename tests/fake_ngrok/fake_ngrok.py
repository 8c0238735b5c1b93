#!/usr/bin/env python3
"""A stand-in for the ngrok v3 agent, good enough for the real pyngrok to drive offline.

pyngrok launches it as its ``ngrok_path``::

    fake_ngrok start --none --log stdout [--config P] [--authtoken T] [--region R]

and it behaves like the agent as far as pyngrok can tell: it serves the local agent API on
``127.0.0.1:<port>`` (``/api/endpoints``, ``/api/tunnels``, ``/api/requests/http``), prints the
three start-up log lines pyngrok waits for (the API already listens when the last one is
printed), and turns each endpoint into a real local reverse proxy whose ``public_url`` is
``http://127.0.0.1:<proxyport>``.  The proxy forwards method, path, headers and body to the
endpoint's upstream and relays the answer, adding ``X-Forwarded-For`` (env
``FAKE_NGROK_CLIENT_IP``, default ``203.0.113.7``, a documentation address used only as a
header value), ``X-Forwarded-Proto: https`` and ``X-Forwarded-Host`` like the real agent.

Other commands: ``--version`` / ``version``, ``config add-authtoken TOKEN [--config P]``,
``update``.

Knobs (environment variables, which pyngrok passes through):

- ``FAKE_NGROK_FAIL=4018|105|106|107|108|324|<code>``: print the agent's error line for that
  code (the final ``lvl=crit`` line echoes the command line, authtoken included, as the real
  agent does in some errors; 105 quotes the authtoken like the real message), then wait to be
  ended (exit 1).
- ``FAKE_NGROK_CONNECT_FAIL=334|324|<code>``: the agent starts, but ``POST /api/endpoints``
  answers 502 with that error (334: "endpoint already online", a second kernel on the same
  dev domain).
- ``FAKE_NGROK_HANG=1``: print nothing at all and never become ready (start timeout).
  ``FAKE_NGROK_HANG=offline``: start the web service, then log ``failed to reconnect session``
  errors every 0.2 s, like an agent with no route to the ngrok service.
- ``FAKE_NGROK_REQUIRE_TOKEN=1``: fail with ERR_NGROK_4018 unless an authtoken is given
  (``--authtoken``, ``NGROK_AUTHTOKEN`` or ``authtoken:`` in the config file).
- ``FAKE_NGROK_ENDPOINT_LIMIT=N``: ``POST /api/endpoints`` beyond N endpoints answers 502
  with the ERR_NGROK_324 error, as the real agent's API does.
- ``FAKE_NGROK_CLIENT_IP``: the address the proxy reports in ``X-Forwarded-For``.

SIGTERM and SIGINT end it cleanly.  Standard library only; it writes its pid nowhere.
Use :func:`install` to write an executable ``ngrok`` wrapper that runs this file with a given
Python interpreter (the wrapper's path is what pyngrok needs as ``ngrok_path``).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import re
import signal
import stat
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

VERSION = "3.20.0"
DEFAULT_CLIENT_IP = "203.0.113.7"
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
}

ERRORS = {
    "4018": (
        "failed to reconnect session",
        "authentication failed: Usage of ngrok requires a verified account and authtoken.\\n\\n"
        "Sign up for an account: https://dashboard.ngrok.com/signup\\n"
        "Install your authtoken: https://dashboard.ngrok.com/get-started/your-authtoken"
        "\\r\\n\\r\\nERR_NGROK_4018\\r\\n",
    ),
    "108": (
        "failed to reconnect session",
        "authentication failed: Your account is limited to 3 simultaneous ngrok agent sessions."
        "\\nYou can run multiple simultaneous tunnels from a single agent session by defining "
        "the tunnels in your agent configuration file and starting them with the command "
        "`ngrok start --all`.\\nYou can view your current agent sessions in the dashboard:\\n"
        "https://dashboard.ngrok.com/agents\\r\\n\\r\\nERR_NGROK_108\\r\\n",
    ),
    "105": (
        "failed to reconnect session",
        "authentication failed: The authtoken you specified does not look like a proper ngrok "
        "tunnel authtoken.\\nYour authtoken: {token}\\nInstructions to install your authtoken "
        "are on your ngrok dashboard:\\nhttps://dashboard.ngrok.com/get-started/your-authtoken"
        "\\r\\n\\r\\nERR_NGROK_105\\r\\n",
    ),
    "107": (
        "failed to reconnect session",
        "authentication failed: The authtoken you specified is properly formed, but it is "
        "invalid.\\nYour authtoken: {token}\\nThis usually happens when:\\n    - You "
        "reset your authtoken\\n    - Your authtoken was for a team account that you were "
        "removed from\\r\\n\\r\\nERR_NGROK_107\\r\\n",
    ),
    "334": (
        "failed to start tunnel",
        "The endpoint 'https://calm-river-1234.ngrok-free.app' is already online. Either\\n"
        "1. stop your existing endpoint first, or\\n2. start both endpoints with "
        "`--pooling-enabled` to load balance between them.\\r\\n\\r\\nERR_NGROK_334\\r\\n",
    ),
    "324": (
        "failed to start tunnel",
        "Your account may not run more than 3 endpoints over a single ngrok agent session.\\n"
        "The endpoints already running on this session are:\\n\\r\\n\\r\\nERR_NGROK_324\\r\\n",
    ),
}

_STOP = threading.Event()
_OUT_LOCK = threading.Lock()


# --- logging in ngrok's logfmt ------------------------------------------------------------


def _quote(value: str) -> str:
    if value and not re.search(r'[\s"=]', value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def log(lvl: str, msg: str, **fields: Any) -> None:
    """Print one agent log line (``t=... lvl=... msg="..." k=v``); ignore a closed stdout."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S%z")
    parts = [f"t={now}", f"lvl={lvl}", f"msg={_quote(msg)}"]
    for key, value in fields.items():
        text = str(value)
        parts.append(f"{key}={text if text == 'nil' else _quote(text)}")
    line = " ".join(parts) + "\n"
    # The real agent may die of SIGPIPE once its reader is gone; the fake keeps running so
    # that tests can find it as a leftover and end it by pid.
    with _OUT_LOCK, contextlib.suppress(OSError, ValueError):
        sys.stdout.write(line)
        sys.stdout.flush()


# --- arguments and config -------------------------------------------------------------------


def _parse(argv: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split argv into positionals and ``--flag value`` options (``--none`` etc. are bare)."""
    bare = {"--none", "--all", "--help", "-h", "--version", "-v"}
    positional: list[str] = []
    options: dict[str, list[str]] = {}
    it = iter(argv)
    for arg in it:
        if arg.startswith("-"):
            name, eq, value = arg.partition("=")
            if eq:
                options.setdefault(name, []).append(value)
            elif name in bare:
                options.setdefault(name, []).append("")
            else:
                options.setdefault(name, []).append(next(it, ""))
        else:
            positional.append(arg)
    return positional, options


def _config_token(paths: list[str]) -> str | None:
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError:
            continue
        match = re.search(r"^\s*authtoken:\s*[\"']?([^\"'\s#]+)", text, re.MULTILINE)
        if match:
            return match.group(1)
    return None


def _add_authtoken(token: str, options: dict[str, list[str]]) -> int:
    configs = options.get("--config")
    if not configs:
        print("ERROR: the fake agent needs --config (it never writes to your home)")
        return 1
    path = Path(configs[-1])
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if re.search(r"^\s*authtoken:", text, re.MULTILINE):
        text = re.sub(r"^(\s*)authtoken:.*$", rf"\g<1>authtoken: {token}", text, flags=re.M)
    elif re.search(r"^agent:\s*$", text, re.MULTILINE):
        text = re.sub(r"^agent:\s*$", f"agent:\n    authtoken: {token}", text, flags=re.M)
    else:
        if "version:" not in text:
            text += 'version: "3"\n'
        text += f"agent:\n    authtoken: {token}\n"
    path.write_text(text, encoding="utf-8")
    print(f"Authtoken saved to configuration file: {path}")
    return 0


# --- the agent's state and endpoints --------------------------------------------------------


class Endpoint:
    """One endpoint: a reverse proxy on 127.0.0.1:<port> to its upstream URL."""

    def __init__(self, agent: Agent, name: str, upstream: str, body: dict[str, Any]):
        self.agent = agent
        self.name = name
        self.id = "ep_" + uuid.uuid4().hex[:24]
        self.upstream = upstream if "://" in upstream else f"http://{upstream}"
        self.body = body
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self.server.daemon_threads = True
        self.server.endpoint = self  # type: ignore[attr-defined]
        self.public_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.conns = 0

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "uri": f"/api/endpoints/{self.name}",
            "public_url": self.public_url,
            "url": self.public_url,
            "proto": "http",
            "upstream": {"url": self.upstream, "protocol": "http1"},
            "config": {"addr": self.upstream, "inspect": True},
            "metrics": {"conns": {"count": self.conns}, "http": {"count": self.conns}},
        }


class Agent:
    """Endpoints by name, captured requests, and the knobs read from the environment."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.endpoints: dict[str, Endpoint] = {}
        self.requests: list[dict[str, Any]] = []
        limit = os.environ.get("FAKE_NGROK_ENDPOINT_LIMIT", "")
        self.endpoint_limit = int(limit) if limit.strip() else None
        self.connect_fail = os.environ.get("FAKE_NGROK_CONNECT_FAIL", "").strip()
        self.client_ip = os.environ.get("FAKE_NGROK_CLIENT_IP", DEFAULT_CLIENT_IP)
        self.counter = itertools.count(1)

    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = str(body.get("name") or f"endpoint-{uuid.uuid4()}")
        upstream = (body.get("upstream") or {}).get("url") or body.get("addr")
        if not upstream:
            return 400, _api_error(102, 400, "invalid tunnel configuration", "no upstream url")
        with self.lock:
            if name in self.endpoints:
                detail = f'endpoint "{name}" already exists'
                return 400, _api_error(102, 400, "invalid tunnel configuration", detail)
            if self.endpoint_limit is not None and len(self.endpoints) >= self.endpoint_limit:
                text = ERRORS["324"][1].replace("\\n", "\n").replace("\\r", "\r")
                text = text.replace("more than 3", f"more than {self.endpoint_limit}")
                return 502, _api_error(103, 502, "failed to start tunnel", text)
            if self.connect_fail:
                msg, err = ERRORS.get(self.connect_fail, ("failed to start tunnel", ""))
                text = err.replace("\\n", "\n").replace("\\r", "\r")
                text = text or f"ERR_NGROK_{self.connect_fail}\r\n"
                return 502, _api_error(103, 502, msg, text)
            endpoint = Endpoint(self, name, str(upstream), body)
            self.endpoints[name] = endpoint
        log(
            "info",
            "started tunnel",
            obj="tunnels",
            name=name,
            addr=endpoint.upstream,
            url=endpoint.public_url,
        )
        return 201, endpoint.as_json()

    def delete(self, name: str) -> bool:
        with self.lock:
            endpoint = self.endpoints.pop(name, None)
        if endpoint is None:
            return False
        endpoint.stop()
        log("info", "end tunnel", obj="tunnels", name=name)
        return True

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)
            del self.requests[:-50]

    def stop_all(self) -> None:
        for name in list(self.endpoints):
            self.delete(name)


def _api_error(code: int, status: int, msg: str, err: str) -> dict[str, Any]:
    return {"error_code": code, "status_code": status, "msg": msg, "details": {"err": err}}


class _ApiHandler(BaseHTTPRequestHandler):
    """The agent's local API (what pyngrok talks to)."""

    server_version = "ngrok-fake"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def agent(self) -> Agent:
        return self.server.agent  # type: ignore[attr-defined]

    def _reply(self, status: int, payload: dict[str, Any] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _route(self) -> tuple[str, str | None, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/")
        for collection in ("/api/endpoints", "/api/tunnels"):
            if path == collection:
                return collection, None, parse_qs(parts.query)
            if path.startswith(collection + "/"):
                return collection, unquote(path[len(collection) + 1 :]), parse_qs(parts.query)
        return path, None, parse_qs(parts.query)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def do_GET(self) -> None:
        collection, name, query = self._route()
        if collection in ("/api/endpoints", "/api/tunnels"):
            key = collection.rsplit("/", 1)[1]
            if name is None:
                items = [e.as_json() for e in list(self.agent.endpoints.values())]
                return self._reply(200, {key: items, "uri": collection})
            endpoint = self.agent.endpoints.get(name)
            if endpoint is None:
                return self._reply(404, _api_error(100, 404, "not found", f"no endpoint {name}"))
            return self._reply(200, endpoint.as_json())
        if collection == "/api/requests/http":
            wanted = (query.get("tunnel_name") or [None])[0]
            items = [r for r in self.agent.requests if wanted in (None, r["tunnel_name"])]
            return self._reply(200, {"uri": collection, "requests": items})
        if collection in ("/api", ""):
            return self._reply(200, {"endpoints": "/api/endpoints", "tunnels": "/api/tunnels"})
        return self._reply(404, _api_error(100, 404, "not found", self.path))

    def do_POST(self) -> None:
        collection, name, _ = self._route()
        if collection in ("/api/endpoints", "/api/tunnels") and name is None:
            status, payload = self.agent.create(self._body())
            return self._reply(status, payload)
        return self._reply(404, _api_error(100, 404, "not found", self.path))

    def do_DELETE(self) -> None:
        collection, name, _ = self._route()
        if collection in ("/api/endpoints", "/api/tunnels") and name is not None:
            if self.agent.delete(name):
                return self._reply(204)
            return self._reply(404, _api_error(100, 404, "not found", f"no endpoint {name}"))
        if collection == "/api/requests/http":
            with self.agent.lock:
                self.agent.requests.clear()
            return self._reply(204)
        return self._reply(404, _api_error(100, 404, "not found", self.path))


class _ProxyHandler(BaseHTTPRequestHandler):
    """The public side of one endpoint: forward to the upstream, relay the answer."""

    server_version = "ngrok-fake-edge"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self) -> None:
        endpoint: Endpoint = self.server.endpoint  # type: ignore[attr-defined]
        agent = endpoint.agent
        endpoint.conns += 1
        body = self._read_body()
        target = urlsplit(endpoint.upstream)
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        headers = [(k, v) for k, v in headers if not k.lower().startswith("x-forwarded-")]
        previous = self.headers.get("X-Forwarded-For")
        forwarded = f"{previous}, {agent.client_ip}" if previous else agent.client_ip
        headers += [
            ("X-Forwarded-For", forwarded),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", self.headers.get("Host") or ""),
            ("Content-Length", str(len(body))),
        ]
        started = time.time()
        log(
            "info",
            "join connections",
            obj="join",
            id=uuid.uuid4().hex[:12],
            l=f"{target.hostname}:{target.port}",
            r=f"{agent.client_ip}:443",
        )
        try:
            conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in headers:
                conn.putheader(key, value)
            conn.endheaders(body or None)
            response = conn.getresponse()
            data = response.read()
            status, reason = response.status, response.reason
            out_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            conn.close()
        except OSError as exc:
            status, reason = 502, "Bad Gateway"
            data = (
                "<html><body><h1>ERR_NGROK_8012</h1><p>Traffic was successfully tunneled to the "
                "ngrok agent, but the agent failed to establish a connection to the upstream "
                f"web service at {target.netloc}. The error encountered was: {exc}</p>"
                "</body></html>"
            ).encode()
            out_headers = [("Content-Type", "text/html"), ("Ngrok-Error-Code", "ERR_NGROK_8012")]
            log("warn", "failed to dial upstream", obj="join", addr=target.netloc, err=str(exc))
        self.send_response(status, reason)
        for key, value in out_headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)
        agent.record(
            {
                "uri": f"/api/requests/http/{next(agent.counter)}",
                "id": "req_" + uuid.uuid4().hex[:20],
                "tunnel_name": endpoint.name,
                "remote_addr": agent.client_ip,
                "start": datetime.fromtimestamp(started, UTC).isoformat(),
                "duration": int((time.time() - started) * 1e9),
                "request": {
                    "method": self.command,
                    "proto": "HTTP/1.1",
                    "headers": {k: [v] for k, v in headers},
                    "uri": self.path,
                },
                "response": {"status": f"{status} {reason}", "status_code": status},
            }
        )

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward


# --- commands ---------------------------------------------------------------------------------


def _fail(code: str, argv: list[str], token: str | None = None) -> int:
    msg, err = ERRORS.get(code, ("failed to reconnect session", f"ERR_NGROK_{code}\\r\\n"))
    err = err.replace("{token}", token or "")
    log("crit", "command failed", err=f"{err} (command: {' '.join(['ngrok', *argv])})")
    log("eror", msg, obj="tunnels.session", err=err)
    # Like the real agent's session loop: it stays up (retrying) until whoever started it
    # has read the error and ends it, so the error line is always there to be read.
    while not _STOP.wait(0.2):
        pass
    return 1


def _start(argv: list[str], options: dict[str, list[str]]) -> int:
    fail = os.environ.get("FAKE_NGROK_FAIL", "").strip()
    hang = os.environ.get("FAKE_NGROK_HANG", "").strip().lower()
    configs = options.get("--config", [])
    token = (
        (options.get("--authtoken") or [""])[-1]
        or os.environ.get("NGROK_AUTHTOKEN")
        or _config_token(configs)
    )
    if hang in ("1", "true", "yes"):
        while not _STOP.wait(0.2):
            pass
        return 0
    for path in configs:
        log("info", "open config file", path=path, err="nil")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiHandler)
    server.daemon_threads = True
    agent = Agent()
    server.agent = agent  # type: ignore[attr-defined]
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    host, port = server.server_address[:2]
    log("info", "starting web service", obj="web", addr=f"{host}:{port}", allow_hosts="[]")
    if hang == "offline":
        err = (
            'failed to dial ngrok server with address "connect.ngrok-agent.com:443": '
            "dial tcp: lookup connect.ngrok-agent.com: no such host"
        )
        while not _STOP.wait(0.2):
            log("eror", "failed to reconnect session", obj="tunnels.session", err=err)
        return 0
    if fail:
        return _fail(fail, argv, token)
    if os.environ.get("FAKE_NGROK_REQUIRE_TOKEN") == "1" and not token:
        return _fail("4018", argv)
    region = (options.get("--region") or ["us"])[-1]
    log("info", "client session established", obj="tunnels.session", region=region)
    log("info", "tunnel session started", obj="tunnels.session")
    while not _STOP.wait(0.5):
        pass
    agent.stop_all()
    server.shutdown()
    server.server_close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one agent command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: _STOP.set())
    positional, options = _parse(argv)
    if "--version" in options or "-v" in options or positional[:1] == ["version"]:
        print(f"ngrok version {VERSION}")
        return 0
    if positional[:2] == ["config", "add-authtoken"] and len(positional) >= 3:
        return _add_authtoken(positional[2], options)
    if positional[:1] == ["update"]:
        print("No update available, this is the latest version.")
        return 0
    if positional[:1] == ["start"]:
        return _start(argv, options)
    print(f"ERROR: the fake ngrok agent does not implement {' '.join(argv)!r}")
    return 1


def install(dest_dir: str | os.PathLike[str], python: str | None = None) -> str:
    """Write an executable ``ngrok`` wrapper into ``dest_dir`` and return its path.

    The wrapper is a Python script whose shebang is ``python`` (default: the running
    interpreter) and which runs this file, so the agent's command line reads
    ``<python> <dest_dir>/ngrok start ...`` (its path appears in ``/proc/<pid>/cmdline``).
    """
    return write_wrapper(Path(dest_dir) / "ngrok", __file__, python)


def write_wrapper(dest: Path, script: str, python: str | None = None) -> str:
    """An executable Python script at ``dest`` that runs ``script`` as ``__main__``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    here = str(Path(script).resolve())
    dest.write_text(
        f"#!{python or sys.executable}\n"
        "import runpy\n"
        f"runpy.run_path({here!r}, run_name='__main__')\n",
        encoding="utf-8",
    )
    dest.chmod(dest.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(dest)


if __name__ == "__main__":
    code = main()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    os._exit(code)
