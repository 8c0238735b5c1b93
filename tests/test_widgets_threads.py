"""Thread census: the widgets run on the receiver's feed and start no thread of their own.

A receiver runs exactly three threads (server loop, store writer, dispatcher).  With a
tracker, an audition and a submit form open on it, after a task has landed and every widget
has done its work (lookups, waveform, lanes, redraws), there are still at most those three;
closing the widgets and stopping the receiver leaves none, and nothing was printed.
Sandbox threads (``suno-sandbox*``) are not counted: they are the emulator's.
"""

from __future__ import annotations

import threading

import suno_nb
from suno_nb import Sandbox, SunoClient
from suno_nb.widgets import audition, submit_form, tracker
from tests.test_widgets import WAIT_S, settle


def _ours() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("suno_nb"))


def test_widgets_add_no_thread_to_the_receivers_three(tmp_path, capsys):
    rx = suno_nb.start_receiver(tmp_path / "rx.sqlite3", tunnel=None)
    try:
        with Sandbox(delay=0.3, retry_backoff=0.1) as sb:
            client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
            song = sb.create_song(duration=60, title="Harbour Lights", tags="indie pop")
            job = client.replace_section(
                task_id=song.task_id,
                audio_id=song.audio_id,
                prompt="new words",
                tags="jazz",
                title="Take",
                full_lyrics="[Verse] la la\n[Chorus] new words",
                infill_start_s=20.0,
                infill_end_s=32.0,
                original_duration=song.duration,
                receiver=rx,
            )
            rx.wait(job.task_id, timeout=WAIT_S, progress=False, raise_on_failure=True)
            receiver_threads = _ours()
            assert len(receiver_threads) <= 3, receiver_threads

            tr = tracker(rx)
            au = audition(rx)
            form = submit_form(
                client, rx, task_id=song.task_id, audio_id=song.audio_id, section=(5.0, 17.0)
            )
            form.section.value = (6.0, 18.0)  # a waveform redraw, a debounced feed job
            au.task_id = job.task_id
            settle(rx, tr, au, form)
            assert au.lanes and form.waveform.value and job.task_id in tr.html.value
            during = _ours()
            assert len(during) <= 3, during  # the receiver's, nothing more
            assert during == receiver_threads

            tr.close()
            au.close()
            form.close()
            rx.stop()
            assert _ours() == []
            client.close()
    finally:
        suno_nb.stop_receiver()
    assert _ours() == []
    # nothing the widgets did on the dispatcher thread printed anything
    assert capsys.readouterr() == ("", "")
