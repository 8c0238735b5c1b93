"""The API reference builds from the docstrings (scripts/apidocs.py, pdoc) with every pdoc
warning an error, and documents what a notebook user calls."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_the_api_reference_builds_and_documents_the_public_surface(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "apidocs.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"API reference: {tmp_path / 'index.html'}"
    page = (tmp_path / "suno_nb.html").read_text(encoding="utf-8")
    widgets = (tmp_path / "suno_nb" / "widgets.html").read_text(encoding="utf-8")
    # every name `import suno_nb` offers has an entry, and the main calls their docstrings
    import suno_nb

    for name in suno_nb.__all__:
        if name not in ("__version__", "widgets"):  # widgets: a page of its own
            assert f'id="{name}"' in page, name
    for text in (
        "Start (or return the running) callback receiver",
        "of a track with new music",
        "Listen to replace-section takes against their original",
    ):
        assert text in page + widgets, text
    for name in ("audition", "submit_form", "tracker"):
        assert f'id="{name}"' in widgets, name
    # reST markup became HTML: no raw roles left in the rendered text
    assert not re.search(r":(class|func|meth|mod|data):`", page + widgets)
