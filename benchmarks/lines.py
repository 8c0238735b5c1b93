"""Line counts of the core: the store, the server, the receiver and the session, today and
before the rewrite (commit 0033107, read with git), against the goal of ≤ 2,600 lines.

Lines are counted like ``wc -l`` (newline characters) over every ``.py`` file of each path,
a module (``suno_nb/server.py``) or a package (``suno_nb/server/``), whichever exists.
Also ``python -m benchmarks.lines``.
"""

from __future__ import annotations

import subprocess
from typing import Any

from .common import ROOT, floor, table

BEFORE = "0033107"  # the last commit before the core rewrite
GOAL = 2600
PARTS = {
    "store": ("suno_nb/store",),
    "server": ("suno_nb/server.py", "suno_nb/server"),
    "receiver": ("suno_nb/receiver.py", "suno_nb/receiver"),
    "session": ("suno_nb/session",),
}


def _today(paths: tuple[str, ...]) -> int:
    total = 0
    for rel in paths:
        path = ROOT / rel
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
        total += sum(f.read_bytes().count(b"\n") for f in files)
    return total


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def _at(commit: str, paths: tuple[str, ...]) -> int:
    names = _git("ls-tree", "-r", "--name-only", commit, "--", *paths).splitlines()
    return sum(_git("show", f"{commit}:{n}").count("\n") for n in names if n.endswith(".py"))


def run(*, quick: bool = False) -> dict[str, Any]:
    """Prints the table and the goal's verdict; returns the numbers."""
    today = {name: _today(paths) for name, paths in PARTS.items()}
    try:
        before: dict[str, int] | None = {name: _at(BEFORE, p) for name, p in PARTS.items()}
    except (OSError, subprocess.SubprocessError):
        before = None  # not a git checkout, or the commit is not in it

    def row(name: str, paths: str, now: int, was: int | None) -> list[str]:
        if was is None:
            return [name, paths, "—", f"{now:,}", "—"]
        return [name, paths, f"{was:,}", f"{now:,}", f"{now - was:+,}"]

    rows = [
        row(name, " + ".join(paths), today[name], before[name] if before else None)
        for name, paths in PARTS.items()
    ]
    total, was_total = sum(today.values()), sum(before.values()) if before else None
    rows.append(row("total", "", total, was_total))
    print(
        f"### lines: the core today and at {BEFORE} (before the rewrite)\n\n"
        + table(["part", "paths", f"at {BEFORE}", "today", "change"], rows, left_columns=2)
        + "\n"
    )
    floors = [
        floor(
            "lines: store + server + receiver + session",
            f"{total:,} (from {was_total:,} at {BEFORE})" if was_total else f"{total:,}",
            f"≤ {GOAL:,}",
            total <= GOAL,
        )
    ]
    return {"today": today, "before": before, "total": total, "floors": floors}


if __name__ == "__main__":
    run()
