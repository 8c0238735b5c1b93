"""What a receiver shows: its repr, its HTML repr, and the warnings worth a line."""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING, Any

from ..errors import SunoNbError

if TYPE_CHECKING:
    from .receiver import Receiver

_GAVE_UP_WORDS = {
    "unknown": "unknown to the service (no longer polled)",
    "expired": "older than the service keeps results (no longer polled)",
}


def warnings(rx: Receiver) -> list[str]:
    """Plain-words notes: tasks we gave up on, then recent warnings from the log."""
    notes: list[str] = []
    if not rx.store.closed:
        try:
            rows = rx.store.query(
                "SELECT state, count(*) AS n FROM tasks WHERE state IN (?, ?) GROUP BY state",
                tuple(_GAVE_UP_WORDS),
            )
        except SunoNbError:
            rows = []
        for row in rows:
            n = int(row["n"])
            notes.append(f"{n} task{'s' if n != 1 else ''} {_GAVE_UP_WORDS[row['state']]}")
    seen: dict[str, int] = {}
    for entry in rx.logbook.warnings(since=rx.started_at):
        seen[entry.message] = seen.get(entry.message, 0) + 1
    for message, n in list(seen.items())[-5:]:
        notes.append(message if n == 1 else f"{message} (×{n})")
    return notes


def summary(rx: Receiver) -> dict[str, Any]:
    counts = rx.store.counts() if not rx.store.closed else {}
    # The callback path token is a capability: shown masked, read it from rx.url.
    url = rx.url.rsplit("/", 1)[0] + "/…" if rx.running else None
    store = rx.store.path
    if not rx.store.memory:
        rel = os.path.relpath(store)
        store = rel if not rel.startswith("..") else store
    problem = None if rx.store.closed else rx.store.problem
    if problem:  # e.g. the file was deleted: every callback is answered 503 until restart
        store = f"{store} UNAVAILABLE: {problem}; callbacks get 503 until restarted"
    folder = rx.archiver.folder
    archive = "off" if folder is None or not rx.archiver.enabled else f"{folder.name}/"
    return {
        "state": "running" if rx.running else "stopped",
        "mode": rx.mode,
        "url": url,
        "store": store,
        "archive": archive,  # takes archived on arrival into this folder beside the store
        "signed": rx.signed,
        **counts,
    }


def text(rx: Receiver) -> str:
    s = summary(rx)
    parts = [f"{s['state']}", f"mode={s['mode']}", f"url={s['url']}", f"store={s['store']!r}"]
    if "tasks" in s:
        parts.append(
            f"tasks={s['tasks']} tracks={s['tracks']} deliveries={s['deliveries']} "
            f"rejected={s['rejected']} pending={s['pending']}"
        )
    out = f"<Receiver {' '.join(parts)}>"
    if rx.tunnel_note and rx.running:
        out += f"\n{rx.tunnel_note}"
    for line in warnings(rx):
        out += f"\n⚠ {line}"
    return out


def html_repr(rx: Receiver) -> str:
    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
        f"<td style='text-align:left'><code>{html.escape(str(v))}</code></td></tr>"
        for k, v in summary(rx).items()
    )
    note = ""
    if rx.tunnel_note and rx.running:
        note = f"<p style='color:var(--jp-warn-color0, #a60)'>{html.escape(rx.tunnel_note)}</p>"
    warned = warnings(rx)
    if warned:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in warned)
        note += (
            "<div style='color:var(--jp-warn-color0, #a60)'>Warnings (details: "
            f"<code>rx.log()</code>)<ul style='margin:2px 0'>{items}</ul></div>"
        )
    return f"<div><b>suno_nb Receiver</b><table>{rows}</table>{note}</div>"
