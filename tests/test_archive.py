"""Archive on arrival, the archive used first, expires_at / audio_state, the original kept
(issue 23).

Takes come from a real Sandbox or from callbacks whose URLs point at a loopback file server
in this module; every wait is on the receiver's change feed (``Change("archive")``).
"""

from __future__ import annotations

import copy
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from suno_nb import Sandbox, SunoClient, compare_takes, contract, views
from suno_nb.audio import clear_memory_cache
from suno_nb.session import current_receiver, start_receiver
from suno_nb.store import archive as archive_rows

from .conftest import post, seed_bytes

SECTION = (10.0, 20.0)


# --- helpers ----------------------------------------------------------------------------------


class Watch:
    """Collects the receiver's committed changes; waits (on the feed) for a condition."""

    def __init__(self, rx) -> None:
        self.rx = rx
        self.cond = threading.Condition()
        self.archive_changes = 0
        rx.subscribe(self._on)

    def _on(self, changes) -> None:
        with self.cond:
            self.archive_changes += sum(1 for c in changes if c.kind == "archive")
            self.cond.notify_all()

    def until(self, predicate, timeout: float = 60.0) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)


def states(rx) -> dict[str, str]:
    f = rx.frame()
    return dict(zip(f["track_id"], f["audio_state"], strict=True))


def wav_bytes(freq: float, seconds: float = 0.5) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 8000, format="WAV")
    return buf.getvalue()


@pytest.fixture
def files():
    """A loopback file server: /a.wav, /b.wav (audio), anything else 404, /gone.wav 410."""
    bodies = {"/a.wav": wav_bytes(440), "/b.wav": wav_bytes(660)}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = bodies.get(self.path)
            if body is None:
                self.send_response(410 if self.path == "/gone.wav" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield base, bodies
    server.shutdown()
    server.server_close()
    thread.join()


def seed_with(task_id: str, track_id: str, audio_url: str, created: str, *more: str) -> bytes:
    """The seed success callback for ``task_id`` with one track (``more``: further
    ``track_id=url`` pairs)."""
    body = json.loads(seed_bytes("seed_success.json"))
    body["data"]["task_id"] = task_id
    tracks = []
    for pair in (f"{track_id}={audio_url}", *more):
        tid, url = pair.split("=", 1)
        track = copy.deepcopy(body["data"]["data"][0])
        track.update(id=tid, audio_url=url, stream_audio_url=None, image_url=None)
        track["createTime"] = created
        tracks.append(track)
    body["data"]["data"] = tracks
    return json.dumps(body).encode()


def now_stamp() -> str:
    return pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def archive_default(monkeypatch):
    """The environment a user has: no $SUNO_NB_ARCHIVE (conftest turns it off for tests)."""
    monkeypatch.delenv("SUNO_NB_ARCHIVE", raising=False)


def make_take(sb, client, duration: float = 30.0):
    song = sb.create_song(duration=duration, title="Harbour Lights", tags="indie pop")
    job = client.replace_section(
        task_id=song.task_id,
        audio_id=song.audio_id,
        prompt="a brighter bridge",
        tags="jazz",
        title="Harbour Lights (take)",
        full_lyrics="[Verse] Harbour lights\n[Bridge] brighter",
        infill_start_s=SECTION[0],
        infill_end_s=SECTION[1],
    )
    return song, job.task_id


# --- the retention fact -----------------------------------------------------------------------


def test_retention_is_the_contracts_fact_with_its_source():
    assert views.RETENTION_S == contract.RETENTION_DAYS * 86400
    assert contract.RETENTION_SOURCE.startswith("https://docs.sunoapi.org/")
    assert contract.get_provider().sources["retention"] == contract.RETENTION_SOURCE


def test_bad_archive_options_are_refused_before_anything_starts(tmp_path):
    for options, field in (
        ({"archive_max_mb": 0}, "archive_max_mb"),
        ({"archive_max_mb": -5}, "archive_max_mb"),
        ({"archive": "yes"}, "archive"),
    ):
        with pytest.raises(ValueError, match=field):
            start_receiver(tmp_path / "bad.sqlite3", tunnel=None, poll=False, **options)
        assert current_receiver() is None
    assert not (tmp_path / "bad.sqlite3").exists()
    assert not (tmp_path / "bad.sqlite3.audio").exists()


# --- archive on arrival -----------------------------------------------------------------------


def test_takes_are_archived_on_arrival_without_any_call(tmp_path, files, archive_default):
    base, bodies = files
    rx = start_receiver(tmp_path / "a.sqlite3", tunnel=None, poll=False)
    watch = Watch(rx)
    body = seed_with("t1", "one", f"{base}/a.wav", now_stamp(), f"two={base}/b.wav")
    assert post(rx.local_url, body).ok
    assert watch.until(lambda: states(rx) == {"one": "archived", "two": "archived"})
    folder = tmp_path / "a.sqlite3.audio"
    assert (folder / "one.wav").read_bytes() == bodies["/a.wav"]
    assert (folder / "two.wav").read_bytes() == bodies["/b.wav"]
    assert sorted(p.name for p in folder.iterdir()) == ["one.wav", "two.wav"]  # no temp left
    assert rx.log("WARNING").empty
    rx.stop()  # the worker ends with the receiver
    assert "suno_nb-archive" not in {t.name for t in threading.enumerate()}


def test_opt_out_archives_nothing(tmp_path, files, archive_default):
    base, _bodies = files
    rx = start_receiver(tmp_path / "o.sqlite3", tunnel=None, poll=False, archive=False)
    body = seed_with("t1", "one", f"{base}/a.wav", now_stamp(), f"two={base}/b.wav")
    assert post(rx.local_url, body).ok
    assert rx.flush(30)  # every subscriber has seen the result
    assert states(rx) == {"one": "live", "two": "live"}
    assert not (tmp_path / "o.sqlite3.audio").exists()
    assert "suno_nb-archive" not in {t.name for t in threading.enumerate()}


@pytest.mark.slow
def test_sandbox_takes_are_archived_byte_for_byte(tmp_path, archive_default):
    import requests

    with Sandbox(delay=0.1) as sb:
        rx = start_receiver(tmp_path / "a.sqlite3", tunnel=None, poll=False)
        watch = Watch(rx)
        with SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx) as client:
            _song, task_id = make_take(sb, client)
            result = rx.wait(task_id, timeout=60, progress=False)
            ids = list(result.tracks["track_id"])
            assert len(ids) == 2
            assert watch.until(lambda: {states(rx).get(t) for t in ids} == {"archived"})
            frame = rx.frame().set_index("track_id")
            for track_id in ids:
                (path,) = (tmp_path / "a.sqlite3.audio").glob(f"{track_id}.*")
                served = requests.get(frame.loc[track_id, "audio_url"], timeout=10).content
                assert path.read_bytes() == served
    # expires_at: the take's createTime plus the service's retention
    created = frame["created_at"].dt.tz_localize("UTC")
    assert ((frame["expires_at"] - created) == pd.Timedelta(days=14)).all()


def test_the_cap_stops_archiving_and_says_so(tmp_path, files):
    base, _bodies = files
    rx = start_receiver(
        tmp_path / "c.sqlite3", tunnel=None, poll=False, archive=True, archive_max_mb=0.001
    )
    watch = Watch(rx)
    assert post(rx.local_url, seed_with("t1", "one", f"{base}/a.wav", now_stamp())).ok
    assert watch.until(lambda: states(rx).get("one") == "archived")
    assert post(rx.local_url, seed_with("t2", "two", f"{base}/b.wav", now_stamp())).ok
    assert watch.until(lambda: (archive_rows.row(rx.store, "t2", "two") or {}).get("error"))
    assert states(rx) == {"one": "archived", "two": "live"}
    assert [p.name for p in (tmp_path / "c.sqlite3.audio").iterdir()] == ["one.wav"]
    said = " ".join(rx.log("WARNING")["message"])
    assert (
        "archive_max_mb" in said and "no longer archived" in said and "nothing was deleted" in said
    )


def test_a_gone_url_reads_expired_and_a_reissued_url_is_archived_again(tmp_path, files, capfd):
    base, bodies = files
    rx = start_receiver(tmp_path / "g.sqlite3", tunnel=None, poll=False, archive=True)
    watch = Watch(rx)
    assert post(rx.local_url, seed_with("t1", "dead", f"{base}/gone.wav", now_stamp())).ok
    assert watch.until(lambda: states(rx).get("dead") == "expired")
    assert "410" in (archive_rows.row(rx.store, "t1", "dead") or {})["error"]
    # a recovery re-issues the URL: archived again, the new file in place
    assert post(rx.local_url, seed_with("t1", "dead", f"{base}/a.wav", now_stamp())).ok
    assert watch.until(lambda: states(rx).get("dead") == "archived")
    assert (tmp_path / "g.sqlite3.audio" / "dead.wav").read_bytes() == bodies["/a.wav"]
    assert post(rx.local_url, seed_with("t1", "dead", f"{base}/b.wav", now_stamp())).ok
    assert watch.until(
        lambda: (archive_rows.row(rx.store, "t1", "dead") or {}).get("url") == f"{base}/b.wav"
    )
    assert (tmp_path / "g.sqlite3.audio" / "dead.wav").read_bytes() == bodies["/b.wav"]
    assert "could not archive track dead" in " ".join(rx.log("WARNING")["message"])
    assert "suno_nb-archive" in {t.name for t in threading.enumerate()}
    rx.stop()
    assert capfd.readouterr() == ("", "")  # the worker's failures went to rx.log() only


def test_expires_at_and_audio_state_live_and_expired(tmp_path, files):
    base, _bodies = files
    rx = start_receiver(tmp_path / "e.sqlite3", tunnel=None, poll=False, archive=False)
    assert post(rx.local_url, seed_with("old", "o", f"{base}/a.wav", "2025-01-01 00:00:00")).ok
    fresh = now_stamp()
    assert post(rx.local_url, seed_with("new", "n", f"{base}/a.wav", fresh)).ok
    assert rx.flush(10)
    frame = rx.frame().set_index("track_id")
    assert str(frame["expires_at"].dtype) == "datetime64[ns, UTC]"
    assert frame.loc["o", "expires_at"] == pd.Timestamp("2025-01-15", tz="UTC")
    assert frame.loc["n", "expires_at"] == pd.Timestamp(fresh, tz="UTC") + pd.Timedelta(days=14)
    assert frame.loc["o", "audio_state"] == "expired"
    assert frame.loc["n", "audio_state"] == "live"
    assert not (tmp_path / "e.sqlite3.audio").exists()
    # one task's result has the same columns
    assert list(rx.result("new").tracks.columns) == list(rx.frame().columns)


# --- the archive used first; the original kept --------------------------------------------------


@pytest.mark.slow
def test_the_original_and_takes_survive_their_sandbox(tmp_path, monkeypatch):
    from suno_nb.widgets import _blind_audio, _blind_plan, _lanes

    rx = start_receiver(tmp_path / "s.sqlite3", tunnel=None, poll=False, archive=True)
    watch = Watch(rx)
    with (
        Sandbox(delay=0.1) as sb,
        SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx) as client,
    ):
        song, task_id = make_take(sb, client)
        takes = list(rx.wait(task_id, timeout=60, progress=False).tracks["track_id"])
        before = compare_takes(rx, task_id, progress=False)  # looks the original up
        assert before["error"].isna().all()

        def all_archived() -> bool:
            kept = [archive_rows.row(rx.store, task_id, t) for t in takes]
            kept.append(archive_rows.row(rx.store, song.task_id, song.audio_id))
            return all(r is not None and r["path"] for r in kept)

        assert watch.until(all_archived)
    # The sandbox is gone: its URLs answer nothing, and nothing is in the download cache.
    monkeypatch.setenv("SUNO_NB_CACHE_DIR", str(tmp_path / "empty-cache"))
    clear_memory_cache()
    kept = rx.archiver.kept_original(song.task_id, song.audio_id)
    assert kept["title"] == "Harbour Lights" and kept["duration"] > 0
    after = compare_takes(rx, task_id, progress=False)
    assert after["error"].isna().all(), after["error"].tolist()
    for col in ("offset_ms", "outside_diff_db", "section_lufs"):
        assert np.allclose(after[col], before[col], equal_nan=False)
    view = _lanes.build(rx, task_id)  # the audition: the Original lane and its metrics
    assert [lane["label"] for lane in view["lanes"]] == ["Original", "Take 1", "Take 2"]
    assert all(lane["error"] is None and lane["bytes"] for lane in view["lanes"])
    assert view["lanes"][1]["metrics"]["section_lufs"] is not None
    found = _blind_plan.candidates(rx, task_id, None)  # the blind test plays them too
    srcs = {key: t["url"] for key, t in found["tracks"].items()}
    assert sorted(srcs) == ["original", "take1", "take2"]
    wavs = _blind_audio.render(srcs, (8.0, 12.0), list(SECTION), True, srcs["original"])
    assert sorted(wavs) == sorted(srcs) and all(len(b) > 1000 for b in wavs.values())
    master = rx.master([takes[0]])
    assert master.audio.shape[1] > 0
    # rx.download copies from the archive: no fetch (the covers' URLs are dead)
    got = rx.download(tmp_path / "out", progress=False)
    audio = got[got["kind"] == "audio"]
    assert set(audio["status"]) == {"copied"}
    for row in audio.itertuples():
        assert (tmp_path / "out" / task_id / f"{row.track_id}.mp3").is_file()
    assert not list((tmp_path / "empty-cache").glob("*.mp3"))


def test_a_url_a_reader_finds_gone_reads_expired_with_archiving_off(tmp_path, files):
    from suno_nb.rows import Submission

    base, _bodies = files
    rx = start_receiver(tmp_path / "r.sqlite3", tunnel=None, poll=False, archive=False)
    rx.record_submission(
        Submission(
            "take", parent_task_id="song", audio_id="orig", infill_start_s=0.1, infill_end_s=0.3
        )
    )
    assert post(rx.local_url, seed_with("song", "orig", f"{base}/a.wav", now_stamp())).ok
    assert post(rx.local_url, seed_with("take", "t1", f"{base}/gone.wav", now_stamp())).ok
    assert rx.flush(10)
    assert states(rx) == {"orig": "live", "t1": "live"}
    table = compare_takes(rx, "take", progress=False)
    assert "410" in table.loc[0, "error"]
    assert rx.flush(10)
    assert states(rx) == {"orig": "live", "t1": "expired"}
    assert not (tmp_path / "r.sqlite3.audio").exists()


@pytest.mark.slow
def test_a_recovery_reissues_urls_and_the_takes_are_archived_again(tmp_path):
    rx = start_receiver(tmp_path / "v.sqlite3", tunnel=None, poll=False, archive=True)
    watch = Watch(rx)
    with (
        Sandbox(delay=0.1, retry_backoff=0.05) as sb,
        SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx) as client,
    ):
        job = client.generate(prompt="a quiet song about the harbour")
        ids = list(rx.wait(job.task_id, timeout=60, progress=False).tracks["track_id"])

        def archived_from_current_urls() -> bool:
            frame = rx.frame().set_index("track_id")
            kept = {t: archive_rows.row(rx.store, job.task_id, t) or {} for t in ids}
            return all(kept[t].get("url") == frame.loc[t, "audio_url"] for t in ids)

        assert watch.until(archived_from_current_urls)
        first = {t: archive_rows.row(rx.store, job.task_id, t)["url"] for t in ids}
        sb.expire(job.task_id)
        assert set(states(rx).values()) == {"archived"}  # the service's copy is gone; ours is not
        rx.recover(job.task_id)
        assert watch.until(
            lambda: (
                archived_from_current_urls()
                and all(archive_rows.row(rx.store, job.task_id, t)["url"] != first[t] for t in ids)
            )
        )
    assert set(states(rx).values()) == {"archived"}
    assert len(list((tmp_path / "v.sqlite3.audio").iterdir())) == len(ids)
