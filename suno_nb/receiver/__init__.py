"""The callback receiver: a minimal ASGI app on :class:`~suno_nb.server.ServerThread`.

Per request, in order: path (404) and method (405); body size (413, by the server);
content type (415); JSON (400); callback schema (400); optional HMAC signature bound to the
body (401); optional IP allow-list (403).  Then the raw delivery and its rows are committed
by the store's single writer and only then the sender gets ``200 {"code": 200, "msg":
"success"}``.  A failed store answers 503 so the sender retries: nothing acknowledged is
ever lost.  Every request that reaches the receiver leaves a row in ``deliveries`` (rejected
ones with their reason; the store keeps the newest N of those).  Handlers are told after
the ack, on the dispatcher's thread.  The callback path token never appears in a stored row
or a log line: paths are masked.
"""

from ..server import Limits
from .app import CALLBACK_PREFIX, MASKED_PATH, CallbackServer, mask_path
from .processor import ACK, STORE_FAILED, AllowList, DeliveryProcessor, Verdict

MAX_BODY = Limits.max_body

__all__ = [
    "ACK",
    "CALLBACK_PREFIX",
    "MASKED_PATH",
    "MAX_BODY",
    "STORE_FAILED",
    "AllowList",
    "CallbackServer",
    "DeliveryProcessor",
    "Verdict",
    "mask_path",
]
