"""A default install: the core works without any extra, and a feature whose extra is missing
says which one to install.  The extras' packages are hidden from a child interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

HIDE = """
import importlib.abc, sys
HIDDEN = {"pyloudnorm", "scipy", "matplotlib", "nbclient", "nbformat", "ipykernel", "pyngrok",
          "jupyterlab"}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
"""


def _run(body: str, tmp_path) -> str:
    code = HIDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow  # a child interpreter with a sandbox and a receiver
def test_the_core_runs_without_any_extra_and_each_extra_is_named(tmp_path):
    out = _run(
        """
        import sys
        import suno_nb as snb

        sb = snb.Sandbox(delay=0.2).start()
        rx = snb.start_receiver("core.sqlite3", tunnel=None, poll=False)
        client = snb.SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
        song = sb.create_song(duration=60)
        job = client.replace_section(task_id=song.task_id, audio_id=song.audio_id, prompt="p",
                                     tags="t", title="t", full_lyrics="[Verse] words",
                                     infill_start_s=20.0, infill_end_s=32.0)
        result = rx.wait(job.task_id, timeout=60, progress=False)
        print("state", result.state, len(rx.frame()))
        import requests
        print("cover", requests.get(result.tracks.image_url.iloc[0], timeout=30).content[:4])
        snb.widgets.tracker(rx)
        print("tracker ok")

        def named(fn):
            try:
                fn()
            except snb.SunoNbError as exc:
                return str(exc)
            return "no error"

        print("analysis:", named(lambda: snb.compare_takes(rx, job.task_id, progress=False)
                                 .pipe(lambda t: t.error.dropna().iloc[0] if t.error.notna().any()
                                       else "measured")))
        from suno_nb import tutorials
        print("notebooks:", named(lambda: tutorials.quickstart("out")))
        print("ngrok:", named(lambda: snb.start_receiver("n.sqlite3", tunnel="ngrok",
                                                         authtoken="2abc_" + "x" * 40)))
        print("hidden:", sorted(m for m in sys.modules if m.split(".")[0] in HIDDEN))
        rx.stop(); sb.stop()
        """,
        tmp_path,
    )
    assert "state succeeded 2" in out
    assert "cover b'\\x89PNG'" in out  # the sandbox's covers need no imaging library
    assert "tracker ok" in out
    assert "pip install 'suno_nb[analysis]'" in out.split("analysis:")[1].splitlines()[0]
    assert "pip install 'suno_nb[notebooks]'" in out.split("notebooks:")[1].splitlines()[0]
    assert "pip install 'suno_nb[ngrok]'" in out.split("ngrok:")[1].splitlines()[0]
    assert "hidden: []" in out
