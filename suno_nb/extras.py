"""Optional packages: import one, or say which extra of suno_nb brings it.

A default install carries what the receiver, client, store, DataFrames, sandbox and widgets
need.  The rest comes with extras (``pip install 'suno_nb[analysis]'`` ...):

=============  ==========================================  =====================================
extra          packages                                    for
=============  ==========================================  =====================================
``analysis``   pyloudnorm (and scipy)                      loudness: ``compare_takes``, masters
``pictures``   matplotlib                                  saved-notebook pictures, difference view
``notebooks``  ipykernel, nbclient, nbformat + the two above  the tutorial notebooks; ``quickstart``
``ngrok``      pyngrok                                     ``start_receiver(tunnel="ngrok")``
``lab``        jupyterlab + ``notebooks``                  a front end for the notebooks
``all``        every extra above
=============  ==========================================  =====================================
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError


def need(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] not in (top, "scipy"):
            raise  # the package is there but broken: its own error says more
        raise MissingExtraError(
            f"{feature} needs the optional package {top!r}, which is not installed: "
            f"pip install 'suno_nb[{extra}]'",
            extra=extra,
        ) from None
