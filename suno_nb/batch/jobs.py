"""A batch's jobs: rows normalized, given a stable key, and checked without sending.

A job is one request: ``kind`` ``"section"`` (the keyword arguments of
:meth:`SunoClient.replace_section <suno_nb.client.SunoClient.replace_section>`) or
``"lines"`` (those of ``replace_lines``), from a ``kind`` column or, without one, from the
columns present (``lines``/``new_lyrics`` mean lines).  The checks are the client's own
(``client.check_replace_section``, ``client_lyrics.check_lines``): no rule is restated here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import client_lyrics
from ..errors import SectionValidationError

KINDS = ("section", "lines")
# Columns a row cannot carry: objects, not request parameters.
NOT_PARAMS = ("receiver",)


@dataclass(frozen=True)
class Job:
    """One row of a batch: its position, kind, cleaned parameters and stable key."""

    row: int
    kind: str
    params: dict[str, Any]
    key: str


@dataclass(frozen=True)
class Problem:
    """Why a row would be refused: the field, the rule (limit) and the message."""

    row: int
    key: str
    kind: str
    field: str
    rule: str
    message: str


def _plain(value: Any) -> Any:
    """numpy/pandas scalars as Python values; NaN/NA/None as None."""
    if value is None:
        return None
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (str, bytes)):
        with contextlib.suppress(ValueError, TypeError):
            value = item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def records(jobs: Any) -> list[dict[str, Any]]:
    """``jobs`` (a DataFrame or an iterable of mappings) as plain dicts, missing values dropped."""
    if hasattr(jobs, "to_dict") and hasattr(jobs, "columns"):
        rows: Iterable[Mapping[str, Any]] = jobs.to_dict("records")
    elif isinstance(jobs, (Mapping, str, bytes)):
        raise TypeError("jobs must be a DataFrame or a list of dicts, one per request")
    else:
        rows = list(jobs)
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise TypeError(f"jobs row {i} is a {type(row).__name__}, not a dict")
        clean = {str(k): _plain(v) for k, v in row.items()}
        out.append({k: v for k, v in clean.items() if v is not None})
    return out


def kind_of(row: Mapping[str, Any]) -> str:
    """The row's ``kind`` column, else ``lines`` when it names lines, else ``section``."""
    kind = row.get("kind")
    if kind is None:
        return "lines" if "lines" in row or "new_lyrics" in row else "section"
    return str(kind)


def _normal(value: Any) -> Any:
    """A parameter as it enters the key: 10, 10.0 and 10.0000001 are one number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(float(value), 6)
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return value


def make_jobs(name: str, jobs: Any) -> list[Job]:
    """Rows with their keys: sha256 of the batch name, the kind and the normalized
    parameters (and which copy of identical rows it is, so repeats are separate jobs)."""
    seen: dict[str, int] = {}
    out = []
    for i, row in enumerate(records(jobs)):
        kind = kind_of(row)
        params = {k: v for k, v in row.items() if k != "kind"}
        keyed = {k: _normal(v) for k, v in params.items()}
        text = json.dumps(
            {"batch": name, "kind": kind, "params": keyed}, sort_keys=True, default=str
        )
        copy = seen.get(text, 0)
        seen[text] = copy + 1
        digest = hashlib.sha256(f"{text}#{copy}".encode()).hexdigest()[:24]
        out.append(Job(row=i, kind=kind, params=params, key=digest))
    return out


_MISSING = re.compile(r"missing \d+ required keyword-only arguments?: (.+)$")
_UNEXPECTED = re.compile(r"unexpected keyword argument '([^']+)'")


def _type_problems(job: Job, exc: TypeError) -> list[Problem]:
    text = str(exc)
    missing = _MISSING.search(text)
    if missing:
        names = re.findall(r"'([^']+)'", missing.group(1))
        return [
            Problem(job.row, job.key, job.kind, n, "required", f"{n}: a column is required")
            for n in names
        ]
    unexpected = _UNEXPECTED.search(text)
    field = unexpected.group(1) if unexpected else "columns"
    method = "replace_lines" if job.kind == "lines" else "replace_section"
    return [
        Problem(
            job.row,
            job.key,
            job.kind,
            field,
            "unknown column",
            f"{field}: not an argument of {method}",
        )
    ]


def check(client: Any, job: Job) -> list[Problem]:
    """The problems of one job, found by the client's own checks; nothing is sent."""
    if job.kind not in KINDS:
        return [
            Problem(
                job.row,
                job.key,
                job.kind,
                "kind",
                f"one of {', '.join(KINDS)}",
                f"kind: {job.kind!r} is not one of {', '.join(KINDS)}",
            )
        ]
    bad = [n for n in NOT_PARAMS if n in job.params]
    if bad:
        return [
            Problem(job.row, job.key, job.kind, n, "not a column", f"{n}: pass it to run_batch")
            for n in bad
        ]
    try:
        if job.kind == "section":
            client.check_replace_section(**job.params)
        else:
            client_lyrics.check_lines(client, **job.params)
    except SectionValidationError as exc:
        limit = exc.limit
        rule = (
            ", ".join(map(str, limit))
            if isinstance(limit, (list, tuple))
            else ("" if limit is None else str(limit))
        )
        return [Problem(job.row, job.key, job.kind, exc.field, rule, str(exc))]
    except TypeError as exc:
        return _type_problems(job, exc)
    return []
