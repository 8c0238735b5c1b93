"""Audio fetches against hosts that misbehave: deadlines, non-audio answers, refused URLs.

Every host is a real server on 127.0.0.1:0 run on a thread in the test: ``RawHost`` speaks
raw sockets (silent, trickling, truncating), ``FileServer`` (from test_audio) serves files
and can be switched from an HTML error page to the real audio.  Deadlines are short (1.5 s)
and elapsed times are only checked against a generous bound, to prove nothing hangs.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import suno_nb.audio as audio
from suno_nb.analysis import METRICS, compare_takes
from suno_nb.errors import AudioError, NetworkError
from suno_nb.events import Feed
from suno_nb.sandbox import media, synth, takes
from tests.test_audio import FileServer

pytestmark = pytest.mark.timeout(120)  # a hang fails here, not after 300 s

DEADLINE = 1.5  # the deadline the tests set
NO_HANG = 30.0  # a generous bound: only proves that a call does not hang
SR = 22050
SECTION = (6.0, 10.0)
HTML = b"<!doctype html><html><body><h1>502 Bad Gateway</h1></body></html>"


class RawHost:
    """A TCP server on 127.0.0.1:0 that misbehaves on purpose, one thread per connection.

    ``mode``: ``"silent"`` accepts and never answers; ``"trickle"`` sends the headers of a
    large audio file, then one byte every ``interval`` s; ``"short"`` promises 10 000 bytes,
    sends 500 and closes.  ``connections`` counts accepted connections.
    """

    def __init__(self, mode: str, interval: float = 0.25) -> None:
        self.mode, self.interval = mode, interval
        self.connections = 0
        self.bytes_sent = 0
        self.accepted = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self, path: str = "/track.mp3") -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.connections += 1
                self._socks.append(conn)
            self.accepted.set()
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.mode == "silent":
                self._stop.wait()
                return
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            length = 1_000_000 if self.mode == "trickle" else 10_000
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\n"
                b"Content-Length: %d\r\n\r\n" % length
            )
            if self.mode == "short":
                conn.sendall(b"\xff" * 500)
                return
            while not self._stop.wait(self.interval):  # pacing, not synchronisation
                conn.sendall(b"\xff")
                with self._lock:
                    self.bytes_sent += 1
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)
        self._sock.close()


@pytest.fixture
def hosts():
    """Make RawHosts; all are stopped after the test."""
    made: list[RawHost] = []

    def make(mode: str, interval: float = 0.25) -> RawHost:
        made.append(RawHost(mode, interval))
        return made[-1]

    yield make
    for host in made:
        host.close()


@pytest.fixture(scope="module")
def songs() -> dict[str, bytes]:
    """An original and a take (section replaced, crossfaded), as MP3 bytes."""
    original = synth.synthesize_song(16.0, seed=3, sr=SR)
    take = takes.replace_section(original, *SECTION, 1, SR, base_seed=3)
    return {"original": media.encode_mp3(original, SR), "take": media.encode_mp3(take, SR)}


@pytest.fixture
def files(songs):
    server = FileServer(
        {"/original.mp3": (songs["original"], "audio/mpeg"), "/take.mp3": (HTML, "audio/mpeg")}
    )
    yield server
    server.close()


def stub_receiver(original_url: str, take_urls: list[str]) -> SimpleNamespace:
    """What compare_takes and the audition read from a receiver: a replace task, its parent
    track (the original) and its takes, with the given audio URLs."""
    tasks = pd.DataFrame(
        [
            {
                "task_id": "parent",
                "state": "succeeded",
                "tracks": 1,
                "parent_task_id": None,
                "audio_id": None,
                "infill_start_s": None,
                "infill_end_s": None,
            },
            {
                "task_id": "replace",
                "state": "succeeded",
                "tracks": len(take_urls),
                "parent_task_id": "parent",
                "audio_id": "orig",
                "infill_start_s": SECTION[0],
                "infill_end_s": SECTION[1],
            },
        ]
    ).assign(
        title="Harbour Lights",
        code=None,
        error=None,
        msg=None,
        submitted_at=pd.NaT,
        first_seen_at=pd.NaT,
    )
    rows = [{"task_id": "parent", "track_id": "orig", "audio_url": original_url}]
    rows += [
        {"task_id": "replace", "track_id": f"take{i}", "audio_url": url}
        for i, url in enumerate(take_urls, start=1)
    ]
    frame = pd.DataFrame(rows).assign(stream_audio_url=None, title="Harbour Lights", duration=16.0)
    return SimpleNamespace(
        tasks=lambda: tasks.copy(),
        frame=lambda: frame.copy(),
        lookup=lambda task_id, timeout=10.0: None,
        started_at=None,
        feed=STUB_FEED,
        subscribe=lambda fn: None,
        unsubscribe=lambda fn: None,
    )


STUB_FEED = Feed()  # the stand-in receiver's feed: the audition runs its jobs there


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty audio cache for this test (and no decoded arrays in memory)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(audio.CACHE_ENV, str(folder))
    audio.clear_memory_cache()
    return folder


def cached_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- the deadline -----------------------------------------------------------------------------


def test_a_trickling_host_is_given_up_on_at_the_deadline_and_nothing_is_cached(hosts, cache):
    host = hosts("trickle")
    url = host.url("/token-abc123/track.mp3")
    t0 = time.monotonic()
    with pytest.raises(AudioError) as info:
        audio.fetch(url, deadline=DEADLINE)
    assert time.monotonic() - t0 < NO_HANG
    message = str(info.value)
    assert f"within the {DEADLINE:g} s deadline" in message, message
    assert url.split("/token")[0] in message  # the host: http://127.0.0.1:<port>
    assert "token-abc123" not in message and "track.mp3" not in message  # host only
    assert "deadline=" in message and audio.DEADLINE_ENV in message  # what to do
    assert host.bytes_sent >= 2  # bytes kept coming: the whole-transfer deadline ended it
    assert cached_files(cache) == []  # no partial file, no temporary file


def test_a_silent_host_is_given_up_on_at_the_deadline(hosts, cache):
    host = hosts("silent")
    t0 = time.monotonic()
    with pytest.raises(AudioError, match=rf"did not answer within the {DEADLINE:g} s deadline"):
        audio.fetch(host.url(), deadline=DEADLINE)
    assert time.monotonic() - t0 < NO_HANG and host.connections == 1
    assert cached_files(cache) == []


def test_a_truncated_body_is_not_cached(hosts, cache):
    with pytest.raises((AudioError, NetworkError)) as info:
        audio.fetch(hosts("short").url(), deadline=DEADLINE)
    assert "500" in str(info.value) or "broke" in str(info.value)
    assert cached_files(cache) == []


def test_compare_takes_reports_the_deadline_per_take(hosts, files, cache):
    host = hosts("trickle")
    rx = stub_receiver(files.url("/original.mp3"), [host.url("/a.mp3"), host.url("/b.mp3")])
    t0 = time.monotonic()
    table = compare_takes(rx, "replace", progress=False, deadline=DEADLINE)
    assert time.monotonic() - t0 < NO_HANG
    assert len(table) == 2 and table[list(METRICS)].isna().all().all()
    for error in table.error:
        assert error.startswith("take audio:") and f"{DEADLINE:g} s deadline" in error, error
    assert len(cached_files(cache)) == 1  # the original only


def test_timeouts_defaults_arguments_and_environment(monkeypatch):
    monkeypatch.delenv(audio.CONNECT_TIMEOUT_ENV, raising=False)
    monkeypatch.delenv(audio.DEADLINE_ENV, raising=False)
    assert audio.timeouts() == (audio.CONNECT_TIMEOUT, audio.DEADLINE) == (10.0, 60.0)
    monkeypatch.setenv(audio.DEADLINE_ENV, "180")
    monkeypatch.setenv(audio.CONNECT_TIMEOUT_ENV, "5")
    assert audio.timeouts() == (5.0, 180.0)
    assert audio.timeouts(2, 30) == (2.0, 30.0)  # arguments win
    monkeypatch.setenv(audio.DEADLINE_ENV, "soon")
    with pytest.raises(ValueError, match=audio.DEADLINE_ENV):
        audio.timeouts()
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="deadline"):
            audio.timeouts(1, bad)


# --- what came back must be audio -------------------------------------------------------------


def test_an_html_answer_is_not_cached_and_the_recovered_host_gives_metrics(files, songs, cache):
    rx = stub_receiver(files.url("/original.mp3"), [files.url("/take.mp3")])
    first = compare_takes(rx, "replace", progress=False)
    (error,) = first.error
    assert "take audio:" in error and "not audio" in error and "audio/mpeg" in error, error
    assert first[list(METRICS)].isna().all().all()
    assert len(cached_files(cache)) == 1  # the original; the error page was not kept

    files.files["/take.mp3"] = (songs["take"], "audio/mpeg")  # the host recovers
    second = compare_takes(rx, "replace", progress=False)
    assert second.error.isna().all(), second.error.tolist()
    assert np.isfinite(second[list(METRICS)].to_numpy(dtype=float)).all()
    assert abs(second.offset_ms.iloc[0]) <= 2
    assert files.hits["/take.mp3"] == 2 and files.hits["/original.mp3"] == 1


def test_a_non_audio_file_cached_by_an_older_version_is_fetched_again(files, songs, cache):
    url = files.url("/original.mp3")
    cached = audio.fetch(url)
    assert cached.parent == cache and files.hits["/original.mp3"] == 1
    cached.write_bytes(HTML)  # what the old cache kept under that name
    path = audio.fetch(url)
    assert path.read_bytes() == songs["original"] and files.hits["/original.mp3"] == 2
    samples, sr = audio.load(url)
    assert sr == SR and samples.size > 10 * SR


def test_download_results_deadline_error_page_and_recovery(hosts, files, songs, tmp_path):
    host = hosts("trickle")
    frame = pd.DataFrame(
        {
            "task_id": ["t", "t", "t"],
            "track_id": ["slow", "broken", "fine"],
            "audio_url": [host.url("/slow.mp3"), files.url("/take.mp3"), "/etc/hostname"],
            "image_url": [None, None, "file:///etc/hostname"],
        }
    )
    dest = tmp_path / "out"
    t0 = time.monotonic()
    out = audio.download_results(frame, dest, progress=False, deadline=DEADLINE)
    assert time.monotonic() - t0 < NO_HANG
    by = {(r.track_id, r.kind): r for r in out.itertuples()}
    assert by[("slow", "audio")].status == "failed"
    assert f"{DEADLINE:g} s deadline" in by[("slow", "audio")].error
    assert (
        by[("broken", "audio")].status == "failed" and "not audio" in by[("broken", "audio")].error
    )
    for key in (("fine", "audio"), ("fine", "image")):
        assert by[key].status == "failed" and "refused" in by[key].error
    assert not [p for p in dest.rglob("*") if p.is_file()]  # nothing partial, nothing wrong

    files.files["/take.mp3"] = (songs["take"], "audio/mpeg")
    (dest / "t").mkdir(parents=True, exist_ok=True)
    (dest / "t" / "broken.mp3").write_bytes(HTML)  # a bad file from an older version
    again = audio.download_results(frame.iloc[[1]], dest, progress=False)
    assert again.status.tolist() == ["downloaded", "no url"]
    assert (dest / "t" / "broken.mp3").read_bytes() == songs["take"]
    third = audio.download_results(frame.iloc[[1]], dest, progress=False)
    assert third.status.tolist() == ["skipped", "no url"]


# --- http(s) only -----------------------------------------------------------------------------

REFUSED = [
    ("/etc/hostname", "file path"),
    ("file:///etc/hostname", "file: URL"),
    ("FILE:/etc/hostname", "file: URL"),
    ("song.mp3", "file path"),
    ("C:\\music\\song.mp3", "file path"),
    ("http:///etc/hostname", "without a host"),
    ("data:audio/mpeg;base64,AAAA", "data: URL"),
    ("http://[::1/x.mp3", "malformed"),
]


@pytest.mark.parametrize(("url", "named"), REFUSED)
def test_anything_but_http_urls_is_refused_before_any_io(url, named, cache, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a request was made")

    monkeypatch.setattr(audio.transfer.requests, "get", no_network)
    for call in (audio.fetch, audio.load, audio.peaks):
        with pytest.raises(AudioError, match="only http:// and https://") as info:
            call(url)
        assert named in str(info.value) and "refused" in str(info.value)
    (result,) = audio.fetch_many([url]).values()
    assert isinstance(result, AudioError) and named in str(result)
    assert cached_files(cache) == []


def test_an_ftp_url_is_refused_and_its_host_never_contacted(hosts, cache):
    host = hosts("silent")
    port = host.url().split(":")[2].split("/")[0]
    with pytest.raises(AudioError, match=r"a ftp: URL: only http:// and https://"):
        audio.fetch(f"ftp://127.0.0.1:{port}/song.mp3")
    assert host.connections == 0 and not host.accepted.is_set()


def test_compare_takes_refuses_a_local_path_and_a_file_url(files, cache):
    rx = stub_receiver(files.url("/original.mp3"), ["/etc/hostname", "file:///etc/hostname"])
    table = compare_takes(rx, "replace", progress=False)
    assert table.error.str.contains("refused to fetch from").all(), table.error.tolist()
    assert "file path" in table.error.iloc[0] and "file: URL" in table.error.iloc[1]


def test_local_files_are_read_only_when_given_as_paths(files, cache):
    path = audio.fetch(files.url("/original.mp3"))
    samples, sr = audio.load(Path(path))  # an explicit Path: the caller chose this file
    mins, _maxs, duration = audio.peaks(Path(path), 100)
    assert sr == SR and mins.size == 100 and duration == pytest.approx(samples.size / sr)
    with pytest.raises(AudioError, match="refused"):
        audio.load(str(path))  # the same file named by a string is not a URL
