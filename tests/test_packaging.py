"""The package as a user gets it: a wheel built here (offline), the notebooks inside it, and
the command line a new user runs first."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600):
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory) -> Path:
    """The wheel built from this checkout (no network: the venv's setuptools), unpacked."""
    tmp = tmp_path_factory.mktemp("wheel")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp),
        ],
        cwd=tmp,
    )
    (wheel,) = tmp.glob("suno_nb-*.whl")
    site = tmp / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert {f"suno_nb/notebooks/{n}" for n in NOTEBOOKS} <= set(names)
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
        zf.extractall(site)
    return site


def _env(site: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PYTHONPATH": str(site)}  # before the editable install's finder


@pytest.mark.slow
def test_the_wheel_carries_the_notebooks_and_hands_them_out(unpacked_wheel, tmp_path):
    env = _env(unpacked_wheel)
    where = _run([sys.executable, "-c", "import suno_nb; print(suno_nb.__file__)"], tmp_path, env)
    assert where.stdout.strip().startswith(str(unpacked_wheel))  # not the checkout
    out = _run([sys.executable, "-m", "suno_nb", "notebooks", "mine"], tmp_path, env)
    assert sorted(p.name for p in (tmp_path / "mine").glob("*.ipynb")) == NOTEBOOKS
    assert (tmp_path / "mine" / "README.md").exists()
    assert "jupyter lab mine" in out.stdout
    (tmp_path / "mine" / NOTEBOOKS[0]).write_text("{}")  # the user's edits are kept
    again = _run([sys.executable, "-m", "suno_nb", "notebooks", "mine"], tmp_path, env)
    assert "all there" in again.stdout and (tmp_path / "mine" / NOTEBOOKS[0]).read_text() == "{}"


@pytest.mark.slow
def test_quickstart_from_the_wheel_runs_the_real_notebook_and_talks(unpacked_wheel, tmp_path):
    env = _env(unpacked_wheel)
    first = _run([sys.executable, "-m", "suno_nb", "quickstart"], tmp_path, env)
    second = _run([sys.executable, "-m", "suno_nb", "quickstart"], tmp_path, env)
    for done in (first, second):
        out = done.stdout
        assert "against the local sandbox" in out and "no key" in out
        assert "this run's results (4 track(s)" in out  # not every row ever stored
        assert "executed notebook written to" in out
        assert "next: open the notebooks in JupyterLab" in out
        assert "python -m suno_nb notebooks suno_nb_notebooks" in out
        assert "without encryption" not in done.stdout + done.stderr  # IPC, not TCP
    executed = tmp_path / "suno_nb_out" / "01_quickstart.executed.ipynb"
    assert '"output_type": "error"' not in executed.read_text()


@pytest.mark.slow
def test_the_sdist_carries_what_the_fast_tests_need_and_they_run_from_it(tmp_path):
    """Built offline from this checkout; unpacked; a sample of the fast lane runs from it
    (its own tests, data, fake agents and notebooks; nothing from the checkout)."""
    _run(
        [
            sys.executable,
            "-c",
            f"from setuptools import build_meta as b; b.build_sdist({str(tmp_path)!r})",
        ],
        cwd=ROOT,
    )
    (sdist,) = tmp_path.glob("suno_nb-*.tar.gz")
    import tarfile

    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path, filter="data")
    (tree,) = (p for p in tmp_path.iterdir() if p.is_dir())
    for needed in (
        "tests/data/seed_success.json",
        "tests/fake_ngrok",
        "tests/fake_cloudflared",
        "notebooks/01_quickstart.ipynb",
        ".ci/run",
        "scripts/test.sh",
        "LICENSE",
    ):
        assert (tree / needed).exists(), needed
    env = _env(tree)
    done = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-n",
            "0",
            "-m",
            "not slow",
            "tests/test_project.py",
            "tests/test_tunnel.py",
            "tests/test_units.py",
        ],
        cwd=tree,
        env=env,
    )
    assert " passed" in done.stdout and "failed" not in done.stdout
