"""Bytes in memory served like a file: ``Range`` requests (RFC 9110 §14), ``HEAD``, ``416``.

Audio players seek with ``Range`` (``bytes=0-`` as a probe, then ``bytes=N-``).  Starlette's
``FileResponse`` does this for a file on disk but reads it through AnyIO worker threads; the
sandbox keeps its results in memory, so :class:`BytesResponse` answers on the event loop
with no thread at all: 200 with the whole body, 206 with one range or
``multipart/byteranges`` for several, 416 with ``Content-Range: bytes */size`` when no range
fits.  A ``Range`` this does not understand (another unit, bad syntax, too many parts) is
ignored, as RFC 9110 allows, and an ``If-Range`` that does not match the ETag gets the
whole body.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

_DIGITS = re.compile(r"[0-9]*")  # ASCII only: str.isdigit() also takes "²"
MAX_RANGES = 100  # more parts than this in one request: serve the whole body instead


class Unsatisfiable(Exception):
    """No requested range overlaps the body."""


def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """``[(start, end), ...]`` (end exclusive, merged, in order) for a ``Range`` header, or
    None to ignore the header.  Raises :class:`Unsatisfiable` when no part fits ``size``."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    parts = spec.split(",")
    if len(parts) > MAX_RANGES:
        return None
    ranges: list[tuple[int, int]] = []
    for part in parts:
        first, dash, last = (s.strip() for s in part.partition("-"))
        if not dash or not _DIGITS.fullmatch(first) or not _DIGITS.fullmatch(last):
            return None  # bad syntax: ignore the whole header
        if not first and not last:
            return None
        if not first:  # suffix: the last N bytes
            n = int(last)
            if n > 0 and size > 0:
                ranges.append((max(0, size - n), size))
            continue
        start = int(first)
        if last and int(last) < start:
            return None
        end = size if not last else min(int(last) + 1, size)
        if start < size:
            ranges.append((start, end))
    if not ranges:
        raise Unsatisfiable
    ranges.sort()
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        if start <= merged[-1][1]:  # overlapping or adjacent: one part
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class BytesResponse(Response):
    """``data`` as a file: ``Accept-Ranges``, ``ETag``, Range, HEAD and 416."""

    def __init__(
        self,
        data: bytes,
        *,
        media_type: str,
        etag: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.data = data
        self.etag = f'"{etag}"'
        super().__init__(b"", media_type=media_type, headers=headers)
        self.headers["accept-ranges"] = "bytes"
        self.headers["etag"] = self.etag
        self.headers["content-length"] = str(len(data))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Headers(scope=scope)
        header_only = scope.get("method", "GET").upper() == "HEAD"
        wanted = request.get("range")
        if_range = request.get("if-range")
        ranges = None
        if wanted is not None and (if_range is None or if_range.strip() == self.etag):
            try:
                ranges = parse_ranges(wanted, len(self.data))
            except Unsatisfiable:
                await self._send(send, 416, {"content-range": f"bytes */{len(self.data)}"}, b"")
                return
        if not ranges:
            await self._send(send, 200, {}, b"" if header_only else self.data)
        elif len(ranges) == 1:
            start, end = ranges[0]
            extra = {"content-range": f"bytes {start}-{end - 1}/{len(self.data)}"}
            await self._send(
                send, 206, extra, b"" if header_only else self.data[start:end], end - start
            )
        else:
            body, ctype = self._multipart(ranges)
            await self._send(
                send, 206, {"content-type": ctype}, b"" if header_only else body, len(body)
            )

    def _multipart(self, ranges: list[tuple[int, int]]) -> tuple[bytes, str]:
        boundary = secrets.token_hex(13)
        size, ctype = len(self.data), self.media_type or "application/octet-stream"
        chunks = []
        for start, end in ranges:
            head = (
                f"--{boundary}\r\nContent-Type: {ctype}\r\n"
                f"Content-Range: bytes {start}-{end - 1}/{size}\r\n\r\n"
            )
            chunks += [head.encode("latin-1"), self.data[start:end], b"\r\n"]
        chunks.append(f"--{boundary}--".encode("latin-1"))
        return b"".join(chunks), f"multipart/byteranges; boundary={boundary}"

    async def _send(
        self, send: Send, status: int, extra: dict[str, str], body: bytes, length: int | None = None
    ) -> None:
        headers = self.headers.mutablecopy()
        for name, value in extra.items():
            headers[name] = value
        if status == 416:
            headers["content-length"] = "0"
        elif length is not None:
            headers["content-length"] = str(length)
        await send({"type": "http.response.start", "status": status, "headers": headers.raw})
        await send({"type": "http.response.body", "body": body, "more_body": False})
