"""The sandbox's files are served from memory with HTTP Range as browsers use it (seeking in
audio): ``parse_ranges`` on its own, then the answers of a running sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from suno_nb.sandbox import Sandbox
from suno_nb.sandbox.ranges import MAX_RANGES, Unsatisfiable, parse_ranges


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-", 100, [(0, 100)]),
        ("bytes=10-19", 100, [(10, 20)]),
        ("bytes=90-200", 100, [(90, 100)]),  # an end past the body is clamped
        ("bytes=-30", 100, [(70, 100)]),  # the last 30
        ("bytes=-300", 100, [(0, 100)]),
        ("BYTES = 5-9", 100, [(5, 10)]),
        ("bytes=0-9, 10-19", 100, [(0, 20)]),  # adjacent parts merge
        ("bytes=50-59,0-9,5-14", 100, [(0, 15), (50, 60)]),  # sorted and merged
        ("bytes=0-9,200-300", 100, [(0, 10)]),  # the part that fits is served
        ("items=0-9", 100, None),  # another unit: ignored
        ("bytes=9-0", 100, None),  # invalid: ignored
        ("bytes=a-b", 100, None),
        ("bytes=²-5", 100, None),  # not an ASCII digit
        ("bytes=-", 100, None),
        ("bytes=", 100, None),
        ("bytes=" + ",".join(["0-0"] * (MAX_RANGES + 1)), 100, None),  # too many parts
    ],
)
def test_parse_ranges(header: str, size: int, expected: list | None) -> None:
    assert parse_ranges(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0)]
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_ranges(header, size)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, bytes]]:
    with Sandbox(delay=0.05) as sb:
        url = sb.create_song(duration=20).tracks[0].stream_audio_url
        yield url, requests.get(url, timeout=30).content


def test_a_head_with_a_range_has_the_range_headers_and_no_body(served: tuple[str, bytes]) -> None:
    url, full = served
    r = requests.head(url, headers={"Range": "bytes=100-199"}, timeout=30)
    assert r.status_code == 206 and r.content == b""
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(full)}"
    assert r.headers["Content-Length"] == "100"


def test_if_range_with_the_etag_ranges_and_with_anything_else_sends_it_all(
    served: tuple[str, bytes],
) -> None:
    url, full = served
    etag = requests.head(url, timeout=30).headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    same = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": etag}, timeout=30)
    assert same.status_code == 206 and same.content == full[:10]
    stale = requests.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'}, timeout=30)
    assert stale.status_code == 200 and stale.content == full


def test_ranges_it_does_not_understand_get_the_whole_file(served: tuple[str, bytes]) -> None:
    url, full = served
    for header in ("items=0-9", "bytes=9-0", "bytes=x-"):
        r = requests.get(url, headers={"Range": header}, timeout=30)
        assert r.status_code == 200 and r.content == full, header


def test_unsatisfiable_is_416_with_the_size(served: tuple[str, bytes]) -> None:
    url, full = served
    for header in (f"bytes={len(full)}-", "bytes=-0"):
        r = requests.get(url, headers={"Range": header}, timeout=30)
        assert r.status_code == 416, header
        assert r.headers["Content-Range"] == f"bytes */{len(full)}"
        assert r.content == b""


def test_a_seek_probe_then_a_seek_like_a_browser(served: tuple[str, bytes]) -> None:
    url, full = served
    with requests.Session() as browser:  # one keep-alive connection, as a media element
        probe = browser.get(url, headers={"Range": "bytes=0-"}, timeout=30)
        assert probe.status_code == 206 and probe.content == full
        middle = len(full) // 2
        seek = browser.get(url, headers={"Range": f"bytes={middle}-"}, timeout=30)
        assert seek.status_code == 206 and seek.content == full[middle:]
        assert seek.headers["Content-Range"] == f"bytes {middle}-{len(full) - 1}/{len(full)}"
