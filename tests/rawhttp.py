"""Raw-socket HTTP helpers for tests where the exact bytes matter (no client library)."""

from __future__ import annotations

import json
import socket


def exchange(port: int, data: bytes, *, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        return read_until_close(conn)


def read_until_close(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (``TimeoutError`` if it does not)."""
    out = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return out
        out += chunk


def answers(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of HTTP/1.1 answers into (status, headers, body) triples."""
    found = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        assert sep, f"incomplete answer head: {raw[:200]!r}"
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), lines[0]
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        found.append((status, headers, rest[:length]))
        raw = rest[length:]
    return found


def one_answer(raw: bytes) -> tuple[int, dict]:
    """The single answer in ``raw`` (asserts there is exactly one) and its JSON body."""
    got = answers(raw)
    assert len(got) == 1, got
    status, headers, body = got[0]
    assert headers["content-type"].startswith("application/json"), headers
    doc = json.loads(body)
    assert doc["code"] == status and isinstance(doc["msg"], str), doc
    return status, doc


def request(
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    close: bool = True,
) -> bytes:
    """The bytes of one HTTP/1.1 request with a Content-Length."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    merged = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    merged.update(headers or {})
    lines += [f"{k}: {v}" for k, v in merged.items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(method: str, target: str, body: bytes, te: str = "chunked", extra: str = "") -> bytes:
    """A request whose body is sent in two chunks."""
    half = len(body) // 2
    parts = [body[:half], body[half:]]
    data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p) + b"0\r\n\r\n"
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: {te}\r\n{extra}Connection: close\r\n\r\n"
    )
    return head.encode() + data


def read_answer(conn: socket.socket) -> tuple[int, dict]:
    """Read exactly one answer from a kept-alive connection; its status and JSON body."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = conn.recv(65536)
        assert chunk, f"closed mid-answer: {raw!r}"
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    return one_answer(head + b"\r\n\r\n" + body)
