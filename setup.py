"""Packaging hook: the tutorial notebooks (top-level ``notebooks/``) ship inside the wheel.

Everything else is in pyproject.toml.  ``build_py`` copies ``notebooks/*.ipynb`` and their
README into ``suno_nb/notebooks/`` of the build, so an installed suno_nb can hand them out
(``python -m suno_nb notebooks DIR``) and ``quickstart`` runs the real notebook.  The repository
keeps one copy of each notebook, at the top level, where nbval tests it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithNotebooks(build_py):
    def run(self) -> None:
        super().run()
        src = HERE / "notebooks"
        if not src.is_dir():  # an sdist without them: nothing to add
            return
        dst = Path(self.build_lib) / "suno_nb" / "notebooks"
        dst.mkdir(parents=True, exist_ok=True)
        for path in [*sorted(src.glob("*.ipynb")), src / "README.md"]:
            if path.exists():
                shutil.copy2(path, dst / path.name)


setup(cmdclass={"build_py": BuildPyWithNotebooks})
