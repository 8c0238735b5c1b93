"""The audition's audio fetches: bounded by the deadline, http(s) only, failures in words.

The audition is built over a stand-in receiver (the tables and the callback hook it reads)
whose tracks live on misbehaving loopback hosts (see test_audio_fetch).  The deadline is set
the way a notebook user sets it for the audition: ``$SUNO_NB_AUDIO_DEADLINE``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import pytest

import suno_nb.audio as audio
from suno_nb.widgets import audition
from tests.frontend import send_from_page, sent_to_page
from tests.test_audio_fetch import DEADLINE, NO_HANG, cache, files, hosts, songs, stub_receiver

pytestmark = pytest.mark.timeout(120)  # a hang fails here, not after 300 s

FIXTURES = (cache, files, hosts, songs)  # shared with test_audio_fetch; pytest finds them here


@pytest.fixture
def short_deadline(monkeypatch):
    monkeypatch.setenv(audio.DEADLINE_ENV, str(DEADLINE))


@pytest.fixture
def made():
    widgets: list = []
    yield widgets
    for w in widgets:
        w.close()


def test_a_silent_host_does_not_hold_up_the_audition(hosts, cache, short_deadline, made):
    host = hosts("silent")
    rx = stub_receiver(host.url("/orig.mp3"), [host.url("/a.mp3"), host.url("/b.mp3")])
    t0 = time.monotonic()
    au = audition(rx, "replace")
    made.append(au)
    assert time.monotonic() - t0 < NO_HANG
    assert [lane["label"] for lane in au.lanes] == ["Original", "Take 1", "Take 2"]
    for lane in au.lanes:
        assert lane["error"].startswith("The audio of ") and "cannot be fetched" in lane["error"]
        assert f"{DEADLINE:g} s deadline" in lane["error"], lane["error"]
        assert not lane["bytes"] and lane["peaks"] == []
    assert host.connections == 3  # each track asked for once: measuring did not ask again


def test_a_trickling_host_is_reported_in_the_lanes_and_the_audio_message(
    hosts, files, cache, short_deadline, made
):
    host = hosts("trickle")
    rx = stub_receiver(files.url("/original.mp3"), [host.url("/a.mp3")])
    t0 = time.monotonic()
    au = audition(rx, "replace")
    made.append(au)
    assert time.monotonic() - t0 < NO_HANG
    original, take = au.lanes
    assert original["error"] is None and original["bytes"] and len(original["peaks"]) == 800
    assert "cannot be fetched" in take["error"] and f"{DEADLINE:g} s deadline" in take["error"]
    assert take["metrics"]["offset_ms"] is None  # not measured

    sent = sent_to_page(au)
    t0 = time.monotonic()
    send_from_page(au, {"type": "audio", "key": "take1"})  # what the page asks for
    assert rx.feed.join(60)
    assert time.monotonic() - t0 < NO_HANG
    (content, buffers), *_ = sent
    assert content["type"] == "audio_error" and buffers == []
    assert "take 1" in content["message"] and f"{DEADLINE:g} s deadline" in content["message"]


@pytest.fixture
def fifo(tmp_path):
    """A named pipe nobody writes to: opening it for reading would block forever."""
    path = tmp_path / "pipe.mp3"
    os.mkfifo(path)
    yield str(path)
    with contextlib.suppress(OSError):  # release a reader that did open it (a failed test)
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def _guarded(fn, timeout: float = NO_HANG):
    """Run ``fn`` on a thread; fail (instead of hanging the suite) if it does not return."""
    result: dict = {}
    done = threading.Event()

    def run():
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the test
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(timeout), "the call hung"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.parametrize("kind", ["path", "file-url", "fifo", "ftp"])
def test_the_audition_refuses_paths_and_other_schemes(kind, fifo, hosts, files, cache, made):
    ftp_host = hosts("silent")
    bad = {
        "path": "/etc/hostname",
        "file-url": "file:///etc/hostname",
        "fifo": fifo,
        "ftp": ftp_host.url("/a.mp3").replace("http://", "ftp://"),
    }[kind]
    rx = stub_receiver(files.url("/original.mp3"), [bad])
    au = _guarded(lambda: audition(rx, "replace"))
    made.append(au)
    original, take = au.lanes
    assert original["error"] is None and original["bytes"]
    assert take["error"].startswith("The audio of take 1 cannot be fetched: refused to fetch")
    assert "only http:// and https://" in take["error"], take["error"]
    assert not take["bytes"] and take["url"] == "" and take["peaks"] == []
    sent = sent_to_page(au)
    _guarded(lambda: send_from_page(au, {"type": "audio", "key": "take1"}))
    assert rx.feed.join(60)
    (content, _), *_ = sent
    assert content["type"] == "audio_error" and "refused" in content["message"]
    assert ftp_host.connections == 0
