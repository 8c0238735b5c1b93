"""Build suno_nb's API reference (HTML) from its docstrings with pdoc.

    .venv/bin/python scripts/apidocs.py [OUT_DIR]      # default: site/api

Documents what ``import suno_nb`` offers (its ``__all__``) and ``suno_nb.widgets``.  Any
pdoc warning (a name in ``__all__`` that does not resolve, a docstring it cannot parse) is an
error, so CI (tests/test_apidocs.py) keeps the reference whole.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pdoc
import pdoc.render

import suno_nb


def build(out: Path) -> Path:
    """Write the reference into ``out``; its entry page."""
    # suno_nb imports its heavier names lazily (a module __getattr__), which pdoc does not
    # follow: resolve them in this process first.
    vars(suno_nb).update({name: getattr(suno_nb, name) for name in suno_nb.__all__})
    pdoc.render.configure(docformat="restructuredtext", show_source=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        pdoc.pdoc("suno_nb", output_directory=out)
    return out / "index.html"


if __name__ == "__main__":
    print(f"API reference: {build(Path(sys.argv[1] if len(sys.argv) > 1 else 'site/api'))}")
