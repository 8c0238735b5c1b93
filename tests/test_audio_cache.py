"""The audio download cache: capped (least recently used first), and cleared on request."""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf

import suno_nb as snb
from suno_nb import audio


def _wav(seconds: float) -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(8000 * seconds), dtype=np.float32), 8000, format="WAV")
    return buf.getvalue()


@pytest.fixture
def host():
    """A loopback host serving /<n>.wav: n seconds of silence (n * 16 kB)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = _wav(float(self.path.strip("/").split(".")[0]))
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_cache_keeps_under_its_cap_dropping_the_least_recently_used(
    host, tmp_path, monkeypatch
):
    monkeypatch.setenv(audio.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(audio.CACHE_MAX_ENV, "0.05")  # 52 kB: three 16 kB files fit
    mine = tmp_path / "cache" / "notes.txt"
    mine.parent.mkdir()
    mine.write_text("not the cache's")  # never deleted: not one of its files
    first, second, third = (audio.fetch(f"{host}/{n}.wav") for n in (1, 1.01, 1.02))
    os.utime(first, (1, 1))  # long unused ...
    audio.fetch(f"{host}/1.wav")  # ... used again: now the most recent
    fourth = audio.fetch(f"{host}/1.03.wav")  # over the cap: the least recently used goes
    assert first.exists() and fourth.exists() and mine.exists()
    assert not second.exists() and third.exists()
    size = sum(p.stat().st_size for p in (tmp_path / "cache").glob("*.wav"))
    assert size <= audio.cache_limit_bytes()


def test_a_file_larger_than_the_cap_is_still_returned(host, tmp_path, monkeypatch):
    monkeypatch.setenv(audio.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(audio.CACHE_MAX_ENV, "0")
    path = audio.fetch(f"{host}/2.wav")
    assert path.exists() and audio.decode(path)[1] == 8000


def test_clear_cache_removes_only_the_caches_files(host, tmp_path, monkeypatch):
    monkeypatch.setenv(audio.CACHE_ENV, str(tmp_path / "cache"))
    a = audio.fetch(f"{host}/1.wav")
    audio.peaks(f"{host}/1.wav", points=50)  # a peaks file beside it
    mine = tmp_path / "cache" / "keep.wav"
    mine.write_bytes(_wav(0.1))
    assert snb.clear_cache() == 2
    assert not a.exists() and mine.exists()
    assert snb.clear_cache() == 0
