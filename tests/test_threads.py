"""The thread census: what a notebook session costs in threads, counted in a fresh process.

Receiver + Sandbox + one replace_section + rx.wait + tracker + audition (and a submit form):
at most 4 threads on the receiver's side (server loop, store writer, feed dispatcher, and the
archive's worker once a take arrived), at most 4 in the sandbox, at most 9 in the whole
process (the main thread included); back to 1 after both stop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    sys.path.insert(0, sys.argv[1])
    import suno_nb as snb
    from suno_nb import widgets

    def census():
        return sorted(t.name for t in threading.enumerate())

    seen = {}
    rx = snb.start_receiver("census.sqlite3", tunnel=None, archive=True)
    sb = snb.Sandbox(delay=0.3).start()
    rx.on_callback(lambda event: seen.setdefault("on_callback", census()))
    client = snb.SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
    song = sb.create_song(duration=60)
    job = client.replace_section(
        task_id=song.task_id, audio_id=song.audio_id, prompt="p", tags="t", title="T",
        full_lyrics="[Verse] a\\n[Chorus] b", infill_start_s=20, infill_end_s=32,
    )
    result = rx.wait(job.task_id, timeout=60, progress=False)
    tracker = widgets.tracker(rx)
    player = widgets.audition(rx)
    form = widgets.submit_form(
        client, rx, task_id=song.task_id, audio_id=song.audio_id, section=(5.0, 17.0)
    )
    form.section.value = (6.0, 18.0)  # a debounced waveform redraw, on the feed
    player.wait_idle()
    form.wait_idle()
    assert rx.flush(30) and sb.wait_idle(30)
    seen["peak"] = census()
    seen["ok"] = result.ok and len(player.lanes) == 3
    tracker.close()
    player.close()
    form.close()
    rx.stop()
    sb.stop()
    seen["after"] = census()
    print(json.dumps(seen))
    """
)


@pytest.mark.slow  # seconds of audio work: the fast lane stays under 90 s; CI runs it
def test_a_session_with_widgets_runs_on_few_threads_and_stop_ends_them(tmp_path):
    script = tmp_path / "census.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert seen["ok"]
    assert "suno_nb-archive" in seen["peak"]
    for moment in ("on_callback", "peak"):
        names = seen[moment]
        receiver = [n for n in names if n.startswith("suno_nb")]
        sandbox = [n for n in names if n.startswith("suno-sandbox")]
        assert len(receiver) <= 4, (moment, names)
        assert len(sandbox) <= 4, (moment, names)
        assert len(names) <= 9, (moment, names)
        assert set(names) == {"MainThread", *receiver, *sandbox}, (moment, names)
    assert seen["after"] == ["MainThread"]
