"""A bounded in-memory log of the package's records, for ``rx.log()`` and the receiver's repr.

The package logger has only a ``NullHandler`` (library convention), so nothing a background
thread logs reaches a cell's output.  A running receiver attaches one :class:`Logbook` to the
``suno_nb`` logger and removes it when it stops; the records stay readable as a DataFrame.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

LOGGER_NAME = "suno_nb"
DEFAULT_CAPACITY = 500
REDACTED = "…"
COLUMNS = ["time", "level", "logger", "message"]


@dataclass(frozen=True)
class Entry:
    """One kept record, already formatted and scrubbed."""

    time: float
    level: str
    levelno: int
    logger: str
    message: str


class Logbook(logging.Handler):
    """A ring buffer of the last ``capacity`` records at ``level`` or above.

    ``secrets`` are replaced by an ellipsis in every kept message (a second line of defence:
    the package never logs them on purpose).
    """

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        *,
        level: int = logging.INFO,
        secrets: Iterable[str | bytes | None] = (),
    ) -> None:
        super().__init__(level)
        self._entries: deque[Entry] = deque(maxlen=max(1, int(capacity)))
        self._guard = threading.Lock()
        self._secrets = tuple(
            s.decode("utf-8", "replace") if isinstance(s, bytes) else s
            for s in secrets
            if s and len(s) >= 6  # a short "secret" would blank ordinary words
        )
        self._logger: logging.Logger | None = None
        self._set_level = False

    def add_secret(self, secret: str | bytes | None) -> None:
        """Scrub ``secret`` from records kept from now on."""
        if isinstance(secret, bytes):
            secret = secret.decode("utf-8", "replace")
        if secret and len(secret) >= 6 and secret not in self._secrets:
            self._secrets = (*self._secrets, secret)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                message += f" ({type(exc).__name__}: {exc})"
            entry = Entry(
                record.created, record.levelname, record.levelno, record.name, self.scrub(message)
            )
        except Exception:  # a broken record must not break the thread that logged it
            self.handleError(record)
            return
        with self._guard:
            self._entries.append(entry)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    # --- attach / detach ------------------------------------------------------------------

    def attach(self, name: str = LOGGER_NAME) -> Logbook:
        """Start keeping records of logger ``name`` (and its children).  Idempotent."""
        if self._logger is None:
            self._logger = logging.getLogger(name)
            self._logger.addHandler(self)
            # INFO records reach a handler only if the logger's level lets them.  Lower our
            # own logger's level only when nobody else would see the difference: the
            # application set no level on it and configured no root handler (with one, the
            # application's logging choices decide what is kept here too).
            if self._logger.level == logging.NOTSET and not logging.getLogger().handlers:
                self._logger.setLevel(self.level)
                self._set_level = True
        return self

    def detach(self) -> None:
        """Stop keeping records; what was kept stays readable.  Idempotent."""
        logger, self._logger = self._logger, None
        if logger is not None:
            logger.removeHandler(self)
            if self._set_level and not any(isinstance(h, Logbook) for h in logger.handlers):
                logger.setLevel(logging.NOTSET)
            self._set_level = False

    @property
    def attached(self) -> bool:
        return self._logger is not None

    # --- reading ---------------------------------------------------------------------------

    def entries(self, *, since: float | None = None, level: int = logging.NOTSET) -> list[Entry]:
        """Kept records, oldest first, at ``level`` or above and at/after ``since``."""
        with self._guard:
            kept = list(self._entries)
        return [e for e in kept if e.levelno >= level and (since is None or e.time >= since)]

    def warnings(self, *, since: float | None = None) -> list[Entry]:
        return self.entries(since=since, level=logging.WARNING)

    def frame(self, *, level: int = logging.NOTSET) -> pd.DataFrame:
        """The kept records as a DataFrame: time (UTC), level, logger, message."""
        import pandas as pd

        rows = self.entries(level=level)
        df = pd.DataFrame(
            {
                "time": pd.to_datetime([e.time for e in rows], unit="s", utc=True),
                "level": pd.Series([e.level for e in rows], dtype="object"),
                "logger": pd.Series([e.logger for e in rows], dtype="object"),
                "message": pd.Series([e.message for e in rows], dtype="object"),
            }
        )
        return df[COLUMNS]

    def __repr__(self) -> str:
        return f"<Logbook {len(self._entries)} record(s){'' if self.attached else ', detached'}>"
