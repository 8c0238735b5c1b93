"""The audio room: fetch with a cache, decode, waveform envelopes, archiving results.

Files come from real loopback servers: a small counting server for the cache rules, and the
Sandbox (real synthesized MP3s and PNG covers) for archiving a receiver's frame.
"""

from __future__ import annotations

import ast
import io
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import soundfile as sf

import suno_nb.audio as audio
from suno_nb import Sandbox, SunoClient
from suno_nb.errors import NetworkError

SR = 22050


def _mp3(seconds: float = 2.0, channels: int = 1) -> bytes:
    t = np.arange(int(SR * seconds)) / SR
    tone = 0.4 * np.sin(2 * np.pi * 440 * t)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    buf = io.BytesIO()
    sf.write(buf, data, SR, format="MP3")
    return buf.getvalue()


PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)


class FileServer:
    """Serves fixed files on 127.0.0.1:0 and counts GETs per path."""

    def __init__(self, files: dict[str, tuple[bytes, str]]):
        self.files = files
        self.hits: Counter[str] = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                outer.hits[self.path] += 1
                entry = outer.files.get(self.path.split("?")[0])
                if entry is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, ctype = entry
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def files():
    server = FileServer(
        {
            "/song.mp3": (_mp3(2.0), "audio/mpeg"),
            "/stereo.mp3": (_mp3(1.0, channels=2), "audio/mpeg"),
            "/stream/abc": (_mp3(1.0), "audio/mpeg"),
            "/cover.png": (PNG, "image/png"),
        }
    )
    yield server
    server.close()


# --- fetch ------------------------------------------------------------------------------------


def test_fetch_caches_and_second_fetch_sends_no_request(files, tmp_path):
    url = files.url("/song.mp3")
    first = audio.fetch(url, cache_dir=tmp_path / "c")
    second = audio.fetch(url, cache_dir=tmp_path / "c")
    assert first == second
    assert first.suffix == ".mp3" and first.parent == tmp_path / "c"
    assert first.read_bytes() == files.files["/song.mp3"][0]
    assert files.hits["/song.mp3"] == 1
    assert not list((tmp_path / "c").glob("*.part"))  # atomic write left no temp file


def test_fetch_default_cache_dir_from_env(files, tmp_path, monkeypatch):
    monkeypatch.setenv(audio.CACHE_ENV, str(tmp_path / "envcache"))
    path = audio.fetch(files.url("/song.mp3"))
    assert path.parent == tmp_path / "envcache"
    monkeypatch.delenv(audio.CACHE_ENV)
    # conftest points HOME at a temporary folder; the platform's user cache dir is under it
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert audio.default_cache_dir() == Path.home() / ".cache" / "suno_nb" / "audio"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert audio.default_cache_dir() == tmp_path / "xdg" / "suno_nb" / "audio"


def test_fetch_takes_extension_from_content_type(files, tmp_path):
    path = audio.fetch(files.url("/stream/abc"), cache_dir=tmp_path)
    assert path.suffix == ".mp3"
    assert audio.fetch(files.url("/stream/abc"), cache_dir=tmp_path) == path
    assert files.hits["/stream/abc"] == 1


def test_fetch_errors_leave_nothing_in_the_cache(files, tmp_path):
    with pytest.raises(audio.AudioError) as info:
        audio.fetch(files.url("/nope.mp3?token=secret"), cache_dir=tmp_path)
    assert info.value.status == 404
    assert "secret" not in str(info.value)  # query strings (signed URLs) are not echoed
    assert not list(tmp_path.iterdir())
    with socket_closed() as url, pytest.raises(NetworkError):
        audio.fetch(url, cache_dir=tmp_path)


class socket_closed:
    """A URL on a port nobody listens on."""

    def __enter__(self) -> str:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return f"http://127.0.0.1:{self.port}/x.mp3"

    def __exit__(self, *exc):
        return False


# --- decode / waveform ----------------------------------------------------------------


def test_decode_path_and_bytes_give_mono_float32(files, tmp_path):
    path = audio.fetch(files.url("/song.mp3"), cache_dir=tmp_path)
    samples, sr = audio.decode(path)
    assert sr == SR
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.size / sr - 2.0) < 0.1
    assert 0.3 < float(np.abs(samples).max()) <= 1.0
    again, sr2 = audio.decode(path.read_bytes())
    assert sr2 == sr and again.shape == samples.shape
    stereo, _ = audio.decode(audio.fetch(files.url("/stereo.mp3"), cache_dir=tmp_path))
    assert stereo.ndim == 1 and abs(stereo.size / SR - 1.0) < 0.1


def test_load_decodes_once_and_peaks_are_cached_on_disk(files, tmp_path, monkeypatch):
    url = files.url("/song.mp3")
    audio.clear_memory_cache()
    calls = []
    real = audio.decode
    monkeypatch.setattr(audio.core, "decode", lambda src: calls.append(src) or real(src))
    a, sr = audio.load(url, cache_dir=tmp_path)
    b, _ = audio.load(url, cache_dir=tmp_path)
    assert a is b and len(calls) == 1 and not a.flags.writeable
    assert files.hits["/song.mp3"] == 1
    mins, maxs, duration = audio.peaks(url, 300, cache_dir=tmp_path)
    assert mins.shape == maxs.shape == (300,) and mins.dtype == np.float32
    assert np.all(mins <= maxs) and duration == pytest.approx(a.size / sr, abs=1e-3)
    stored = list(tmp_path.glob("*.peaks300.npy"))
    assert len(stored) == 1 and stored[0].stat().st_size < 5000
    audio.clear_memory_cache()
    again = audio.peaks(url, 300, cache_dir=tmp_path)
    assert len(calls) == 1  # read back from disk: nothing decoded again
    np.testing.assert_array_equal(again[1], maxs)
    with pytest.raises(audio.AudioError):
        audio.load(tmp_path / "missing.mp3")


def test_decode_rejects_garbage():
    with pytest.raises(audio.AudioError):
        audio.decode(b"definitely not audio")


def test_waveform_envelope_shapes():
    sr = 1000
    t = np.arange(10 * sr) / sr
    x = np.sin(2 * np.pi * 5 * t).astype(np.float32)
    times, mins, maxs = audio.waveform(x, sr, points=200)
    assert times.shape == mins.shape == maxs.shape == (200,)
    assert np.all(mins <= maxs)
    assert np.all(np.diff(times) > 0) and 0 < times[0] < times[-1] < 10
    assert maxs.max() == pytest.approx(1.0, abs=1e-3) and mins.min() == pytest.approx(
        -1.0, abs=1e-3
    )
    # fewer samples than points: one bin per sample
    t2, lo, hi = audio.waveform(np.array([0.1, -0.2, 0.3], np.float32), 3, points=2000)
    assert t2.shape == (3,) and np.array_equal(lo, hi)
    empty = audio.waveform(np.zeros(0, np.float32), sr)
    assert all(a.size == 0 for a in empty)
    with pytest.raises(ValueError):
        audio.waveform(x, 0)


# --- download_results ----------------------------------------------------------------


class CountingSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.hooks["response"].append(lambda r, *a, **k: self.urls.append(r.url))


@pytest.fixture
def sandbox():
    with Sandbox(delay=0.2, retry_backoff=0.1) as sb:
        yield sb


def test_download_results_archives_a_receivers_frame_once(sandbox, rx, tmp_path):
    client = SunoClient(base_url=sandbox.url, api_key=sandbox.api_key, receiver=rx)
    song = sandbox.create_song(duration=30, title="Archive Me")
    job = client.replace_section(
        task_id=song.task_id,
        audio_id=song.audio_id,
        prompt="la la",
        tags="folk",
        title="Archived",
        full_lyrics="[Verse] la la la\n[Chorus] new words",
        infill_start_s=5,
        infill_end_s=15,
        original_duration=song.duration,
    )
    rx.wait(job.task_id, timeout=60, progress=False, raise_on_failure=True)
    frame = rx.frame()
    assert len(frame) == 2

    dest = tmp_path / "takes"
    session = CountingSession()
    out = audio.download_results(frame, dest, session=session, progress=False)
    assert list(out.columns) == audio.DOWNLOAD_COLUMNS
    assert len(out) == 4 and set(out["status"]) == {"downloaded"}
    assert len(session.urls) == 4
    for row in out.itertuples():
        path = Path(row.path)
        assert path.parent == dest / job.task_id
        assert path.stem == row.track_id
        assert path.stat().st_size == row.bytes > 0
        if row.kind == "audio":
            assert path.suffix == ".mp3"
            info = sf.info(str(path))
            assert info.samplerate == sandbox.sample_rate
            assert abs(info.duration - song.duration) < 0.5
            samples, _ = audio.decode(path)
            assert samples.size > 0
        else:
            assert path.suffix == ".png"
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = audio.download_results(frame, dest, session=session, progress=False)
    assert set(again["status"]) == {"skipped"}
    assert len(session.urls) == 4  # nothing was requested the second time
    assert again["path"].tolist() == out["path"].tolist()


def test_download_results_reports_failures_and_goes_on(files, tmp_path):
    frame = pd.DataFrame(
        {
            "task_id": ["t1", "t1", "../evil"],
            "track_id": ["a", "b", "c/../../x"],
            "audio_url": [files.url("/song.mp3"), files.url("/gone.mp3"), files.url("/stream/abc")],
            "image_url": [files.url("/cover.png"), None, ""],
        }
    )
    out = audio.download_results(frame, tmp_path / "d", progress=False)
    by = {(r.track_id, r.kind): r for r in out.itertuples()}
    assert by[("a", "audio")].status == "downloaded"
    assert by[("a", "image")].status == "downloaded"
    assert by[("b", "audio")].status == "failed" and "404" in by[("b", "audio")].error
    assert by[("b", "image")].status == "no url"
    evil = Path(by[("c/../../x", "audio")].path).resolve()
    assert evil.is_relative_to((tmp_path / "d").resolve())  # ids cannot escape dest
    assert evil.suffix == ".mp3"  # from the content type: the URL has no extension
    with pytest.raises(ValueError):
        audio.download_results(pd.DataFrame({"x": [1]}), tmp_path, progress=False)


def test_audio_module_imports_stay_light():
    top = set()
    for path in Path(audio.__file__).parent.glob("*.py"):  # the package's every module
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                top |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                top.add("." * node.level + (node.module or ""))
    allowed = {
        "__future__",
        "contextlib",
        "hashlib",
        "io",
        "logging",
        "os",
        "re",
        "tempfile",
        "threading",
        "collections",
        "collections.abc",
        "concurrent.futures",
        "math",
        "time",
        "pathlib",
        "typing",
        "urllib.parse",
        "numpy",
        "requests",
        "urllib3.exceptions",
        "..errors",
        ".archive",
        ".core",
        ".transfer",
    }
    assert top <= allowed, top - allowed
