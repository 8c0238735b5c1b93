"""The Receiver's log and display: rx.log(), warnings, repr and HTML repr."""

from __future__ import annotations

import html
import logging
import os
from typing import TYPE_CHECKING, Any

from ..errors import SunoNbError

if TYPE_CHECKING:  # pandas loads on first use: `import suno_nb` stays light
    import pandas as pd

log = logging.getLogger("suno_nb.session")


class ViewMixin:
    """The log, the warnings and the reprs of :class:`Receiver`."""

    # --- the log: records kept for rx.log() and the repr, never printed ------------------

    def _attach_logbook(self) -> None:
        if self._logbook is not None:
            return
        from ..logbook import Logbook

        token = self._server.path.rstrip("/").rsplit("/", 1)[-1]
        self._logbook = Logbook(
            secrets=(
                token,
                self.config.hmac_key,
                self.config.authtoken,
                getattr(self, "_authtoken", None),  # found in env/.env/Colab: not in config
            )
        ).attach()

    def _detach_logbook(self) -> None:
        if self._logbook is not None:
            self._logbook.detach()

    def log(self, level: str | int = "INFO") -> pd.DataFrame:
        """Recent suno_nb log records (time, level, logger, message), oldest first.

        Background threads never print into cells; what they log is kept here (the last
        500 records at ``level`` or above, kept while this receiver runs).
        """
        import logging as _logging

        from ..logbook import COLUMNS

        number = level if isinstance(level, int) else _logging.getLevelName(str(level).upper())
        if not isinstance(number, int):
            raise ValueError(f"level={level!r}: use DEBUG, INFO, WARNING or ERROR")
        if self._logbook is None:
            import pandas as _pd

            return _pd.DataFrame({c: [] for c in COLUMNS})
        return self._logbook.frame(level=number)

    def _warnings(self) -> list[str]:
        """Plain-words notes for the repr: tasks we gave up on, then recent warnings."""
        notes: list[str] = []
        if not self.store.closed:
            try:
                rows = self.store.query(
                    "SELECT state, count(*) AS n FROM tasks WHERE state IN (?, ?) GROUP BY state",
                    ("unknown", "expired"),
                )
            except SunoNbError:
                rows = []
            words = {
                "unknown": "unknown to the service (no longer polled)",
                "expired": "older than the service keeps results (no longer polled)",
            }
            for row in rows:
                n = int(row["n"])
                notes.append(f"{n} task{'s' if n != 1 else ''} {words[row['state']]}")
        if self._logbook is not None:
            seen: dict[str, int] = {}
            for entry in self._logbook.warnings(since=self.started_at):
                seen[entry.message] = seen.get(entry.message, 0) + 1
            for message, n in list(seen.items())[-5:]:
                notes.append(message if n == 1 else f"{message} (×{n})")
        return notes

    # --- display ------------------------------------------------------------------------------

    def _summary(self) -> dict[str, Any]:
        counts = self.store.counts() if not self.store.closed else {}
        # The callback path token is a capability: shown masked, read it from rx.url.
        url = self.url.rsplit("/", 1)[0] + "/…" if self.running else None
        store = self.store.path
        if not self.store.memory:
            rel = os.path.relpath(store)
            store = rel if not rel.startswith("..") else store
        problem = None if self.store.closed else self.store.problem
        if problem:  # e.g. the file was deleted: every callback is answered 503 until restart
            store = f"{store} UNAVAILABLE: {problem}; callbacks get 503 until restarted"
        return {
            "state": "running" if self.running else "stopped",
            "mode": self.mode,
            "url": url,
            "store": store,
            "signed": self.signed,
            **counts,
        }

    def __repr__(self) -> str:
        s = self._summary()
        parts = [f"{s['state']}", f"mode={s['mode']}", f"url={s['url']}", f"store={s['store']!r}"]
        if "tasks" in s:
            parts.append(
                f"tasks={s['tasks']} tracks={s['tracks']} "
                f"deliveries={s['deliveries']} rejected={s['rejected']} "
                f"pending={s['pending']}"
            )
        text = f"<Receiver {' '.join(parts)}>"
        if self.tunnel_note and self.running:
            text += f"\n{self.tunnel_note}"
        for line in self._warnings():
            text += f"\n⚠ {line}"
        return text

    def _repr_html_(self) -> str:
        s = self._summary()
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'><code>{html.escape(str(v))}</code></td></tr>"
            for k, v in s.items()
        )
        note = (
            f"<p style='color:#a60'>{html.escape(self.tunnel_note)}</p>"
            if self.tunnel_note and self.running
            else ""
        )
        warned = self._warnings()
        if warned:
            items = "".join(f"<li>{html.escape(w)}</li>" for w in warned)
            note += (
                "<div style='color:#a60'>Warnings (details: <code>rx.log()</code>)"
                f"<ul style='margin:2px 0'>{items}</ul></div>"
            )
        return f"<div><b>suno_nb Receiver</b><table>{rows}</table>{note}</div>"
