"""The tutorial notebooks: where they are, copying them out, and running the quickstart.

A wheel carries them as ``suno_nb/notebooks/`` (``setup.py`` copies the repository's
top-level ``notebooks/`` into the build); a checkout with an editable install has only the
top-level folder, which is used when the packaged copy is absent.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import SunoNbError
from .extras import need

QUICKSTART = "01_quickstart.ipynb"
CHECKOUT_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_dir() -> Path:
    """The folder holding the tutorial notebooks: the packaged copy, else the checkout's."""
    packaged = Path(__file__).resolve().parent / "notebooks"
    for folder in (packaged, CHECKOUT_DIR):
        if (folder / QUICKSTART).is_file():
            return folder
    raise SunoNbError(
        "the tutorial notebooks are not installed with this suno_nb (neither "
        f"{packaged} nor {CHECKOUT_DIR} has them); reinstall it from a wheel or a checkout"
    )


def from_checkout() -> bool:
    """Whether the notebooks come from a source checkout (an editable install)."""
    return notebook_dir() == CHECKOUT_DIR


def copy_notebooks(dest: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Copy every tutorial notebook (and their README) into ``dest``; return the copies.

    Existing files are kept unless ``overwrite`` (your edits and runs are not lost)."""
    src = notebook_dir()
    out = Path(dest).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in [*sorted(src.glob("*.ipynb")), src / "README.md"]:
        target = out / path.name
        if path.is_file() and (overwrite or not target.exists()):
            shutil.copy2(path, target)
            copied.append(target)
    return copied


def open_command(folder: str | Path) -> str:
    """The one command that opens ``folder`` in JupyterLab from this environment (installing
    the ``lab`` extra first when JupyterLab is missing)."""
    bindir = Path(sys.executable).parent
    lab = f"{bindir / 'jupyter'} lab {folder}"
    if importlib.util.find_spec("jupyterlab") is not None:
        return lab
    spec = f"-e '{CHECKOUT_DIR.parent}[lab]'" if from_checkout() else "'suno_nb[lab]'"
    return f"{bindir / 'python'} -m pip install {spec} && {lab}"


def run_notebook(path: Path | Any, workdir: Path, *, timeout: float = 300) -> Any:
    """Execute a notebook (a path, or a notebook already read with nbformat) headlessly in a
    kernel of this Python, in ``workdir``; return the executed copy (or the notebook itself).

    The kernel talks over IPC sockets in a private temporary folder (no TCP port, so no
    "running over TCP without encryption" warning)."""
    feature = "Running a notebook (python -m suno_nb quickstart)"
    nbformat = need("nbformat", extra="notebooks", feature=feature)
    NotebookClient = need("nbclient", extra="notebooks", feature=feature).NotebookClient
    need("ipykernel", extra="notebooks", feature=feature)  # the kernel it starts
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4) if isinstance(path, str | Path) else path
    with tempfile.TemporaryDirectory(prefix="suno_nb_kernel_") as sockets:
        # nbclient makes (and shuts down) its own kernel manager, configured for IPC.
        config = Config({"KernelManager": {"transport": "ipc", "ip": f"{sockets}/kernel"}})
        NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            config=config,
            resources={"metadata": {"path": str(workdir)}},
        ).execute()
    return nb


def quickstart(out_dir: str | Path, notebook: str | Path | None = None) -> dict[str, Any]:
    """Run the quickstart notebook against the local sandbox in ``out_dir``.

    Returns ``executed`` (the executed notebook's path), ``rows`` (this run's result rows,
    a DataFrame) and ``started`` (Unix time)."""
    from .frame import frame
    from .store import DEFAULT_PATH, Store

    source = Path(notebook) if notebook is not None else notebook_dir() / QUICKSTART
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    nb = run_notebook(source, out)
    nbformat = need("nbformat", extra="notebooks", feature="Running a notebook")
    executed = out / source.name.replace(".ipynb", ".executed.ipynb")
    nbformat.write(nb, executed)
    store = Store(out / DEFAULT_PATH)
    try:
        rows = frame(store)
    finally:
        store.close()
    mine = rows[rows["submitted_at"] >= _utc(started)]  # this run's only (NaT: not)
    return {"executed": executed, "rows": mine, "started": started, "notebook": source}


def _utc(ts: float) -> Any:
    import pandas as pd

    return pd.Timestamp(ts, unit="s", tz="UTC")
