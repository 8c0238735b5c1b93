"""suno_nb: the Suno "replace section" workflow, native in a Jupyter notebook.

>>> import suno_nb as snb
>>> rx = snb.start_receiver()        # background receiver (+ ngrok tunnel when configured)
>>> client = snb.SunoClient()        # SUNO_API_KEY from the environment
"""

from __future__ import annotations

import logging
import typing

from .contract import Provider, get_provider
from .errors import (
    ApiError,
    ApiValidationError,
    AudioError,
    AuthError,
    InsufficientCreditsError,
    KeyLimitError,
    MaintenanceError,
    NetworkError,
    NgrokAuthtokenMissing,
    NgrokBinaryUnavailable,
    NgrokEndpointLimit,
    NgrokSessionLimit,
    NgrokStartTimeout,
    NotFoundError,
    PayloadError,
    RateLimitError,
    ReceiverError,
    SectionValidationError,
    ServerError,
    SignatureError,
    StoreError,
    SunoNbError,
    SunoNbWarning,
    TaskFailedError,
    TunnelError,
    UnknownTaskError,
    WaitTimeout,
)
from .payloads import CALLBACK_CODES, code_table
from .rules import validate_section

if typing.TYPE_CHECKING:  # what the lazy names below are, for type checkers and editors
    from .analysis import compare_takes
    from .audio import clear_cache
    from .batch import Batch, preview_batch, run_batch
    from .client import GenerateJob, ReplaceJob, SunoClient
    from .lyrics import plan_lines
    from .sandbox import Faults, Sandbox
    from .session import Receiver, TaskResult, current_receiver, start_receiver, stop_receiver
    from .tunnel.where import doctor

__version__ = "0.1.0"

# The library convention: records go nowhere unless the application configures logging.
# Without it, WARNINGs from background threads reach stderr through logging's last-resort
# handler, i.e. the output of whichever cell happens to run.  `rx.log()` keeps them instead.
logging.getLogger(__name__).addHandler(logging.NullHandler())


# Loaded on first use, so `import suno_nb` stays light: the HTTP client (requests), the
# server (uvicorn), numpy's audio stack and ipywidgets come in with what needs them.
_LAZY = {
    "SunoClient": ".client",
    "ReplaceJob": ".client",
    "GenerateJob": ".client",
    "Receiver": ".session",
    "TaskResult": ".session",
    "current_receiver": ".session",
    "start_receiver": ".session",
    "stop_receiver": ".session",
    "Sandbox": ".sandbox",
    "Faults": ".sandbox",
    "widgets": ".widgets",
    "compare_takes": ".analysis",
    "plan_lines": ".lyrics",
    "doctor": ".tunnel.where",
    "clear_cache": ".audio",
    "Batch": ".batch",
    "preview_batch": ".batch",
    "run_batch": ".batch",
    "Master": ".master",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name], __name__)
        return module if name == "widgets" else getattr(module, name)
    raise AttributeError(f"module 'suno_nb' has no attribute {name!r}")


__all__ = [
    "CALLBACK_CODES",
    "ApiError",
    "ApiValidationError",
    "AudioError",
    "AuthError",
    "Batch",
    "Faults",
    "GenerateJob",
    "InsufficientCreditsError",
    "KeyLimitError",
    "MaintenanceError",
    "Master",
    "NetworkError",
    "NgrokAuthtokenMissing",
    "NgrokBinaryUnavailable",
    "NgrokEndpointLimit",
    "NgrokSessionLimit",
    "NgrokStartTimeout",
    "NotFoundError",
    "PayloadError",
    "Provider",
    "RateLimitError",
    "Receiver",
    "ReceiverError",
    "ReplaceJob",
    "Sandbox",
    "SectionValidationError",
    "ServerError",
    "SignatureError",
    "StoreError",
    "SunoClient",
    "SunoNbError",
    "SunoNbWarning",
    "TaskFailedError",
    "TaskResult",
    "TunnelError",
    "UnknownTaskError",
    "WaitTimeout",
    "__version__",
    "clear_cache",
    "code_table",
    "compare_takes",
    "current_receiver",
    "doctor",
    "get_provider",
    "plan_lines",
    "preview_batch",
    "run_batch",
    "start_receiver",
    "stop_receiver",
    "validate_section",
    "widgets",
]
