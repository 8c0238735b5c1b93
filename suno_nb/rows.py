"""The rows suno_nb keeps: one definition per table, and the views shown as DataFrames.

Everything else derives from here: the store's DDL (:mod:`suno_nb.store.schema`), the parse
target of a result track (:class:`Track`, filled by :mod:`suno_nb.payloads` from either wire
spelling), and the DataFrames' columns and dtypes (:mod:`suno_nb.frame`).  A column's *kind*
decides its SQLite type and its pandas dtype:

=========  ==============  ===========================================================
kind       SQLite          pandas
=========  ==============  ===========================================================
``text``   TEXT            ``object`` (str, or None when missing)
``real``   REAL            ``float64`` (NaN when missing)
``int``    INTEGER         ``Int64`` (nullable)
``count``  INTEGER         ``int64`` (never missing)
``bool``   INTEGER         ``bool``
``time``   REAL            ``datetime64[ns, UTC]`` (stored as Unix seconds)
``stamp``  TEXT            ``datetime64[ns]``, naive (the service's ``createTime``)
``json``   TEXT            ``object`` (the decoded value)
``blob``   BLOB            ``object`` (bytes)
=========  ==============  ===========================================================
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["text", "real", "int", "count", "bool", "time", "stamp", "json", "blob"]

SQL_TYPES: dict[str, str] = {
    "text": "TEXT",
    "real": "REAL",
    "int": "INTEGER",
    "count": "INTEGER NOT NULL DEFAULT 0",
    "bool": "INTEGER NOT NULL DEFAULT 0",
    "time": "REAL",
    "stamp": "TEXT",
    "json": "TEXT",
    "blob": "BLOB",
}


@dataclass(frozen=True)
class Column:
    """One column: its name, kind and any SQL constraint beyond the kind's type."""

    name: str
    kind: Kind
    constraint: str = ""

    @property
    def ddl(self) -> str:
        return (
            f"{self.name} {SQL_TYPES[self.kind]}{' ' + self.constraint if self.constraint else ''}"
        )


@dataclass(frozen=True)
class Table:
    """A table: its columns in order, and table constraints (primary key, checks)."""

    name: str
    columns: tuple[Column, ...]
    constraints: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def __getitem__(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def ddl(self) -> str:
        parts = [c.ddl for c in self.columns] + list(self.constraints)
        return f"CREATE TABLE {self.name} (\n  " + ",\n  ".join(parts) + "\n)"

    def insert_sql(self, names: tuple[str, ...] | None = None) -> str:
        cols = names or self.names
        return f"INSERT INTO {self.name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


# --- the result track: parse target and stored row -------------------------------------------


def _wire(kind: Kind, snake: str, camel: str) -> Any:
    """A :class:`Track` field: its kind and its names in callbacks (snake_case) and in
    record-info answers (camelCase)."""
    return field(default=None, metadata={"kind": kind, "snake": snake, "camel": camel})


@dataclass(frozen=True)
class Track:
    """One result track, normalised from either wire spelling (callbacks say ``audio_url``,
    record-info says ``audioUrl``).  Fields the service adds later are kept in ``extra``."""

    id: str = field(metadata={"kind": "text", "snake": "id", "camel": "id"})
    audio_url: str | None = _wire("text", "audio_url", "audioUrl")
    stream_audio_url: str | None = _wire("text", "stream_audio_url", "streamAudioUrl")
    image_url: str | None = _wire("text", "image_url", "imageUrl")
    prompt: str | None = _wire("text", "prompt", "prompt")
    model_name: str | None = _wire("text", "model_name", "modelName")
    title: str | None = _wire("text", "title", "title")
    tags: str | None = _wire("text", "tags", "tags")
    create_time: str | None = _wire("stamp", "createTime", "createTime")
    duration: float | None = _wire("real", "duration", "duration")
    extra: dict[str, Any] = field(default_factory=dict, metadata={"kind": "json"})

    def values(self) -> tuple[Any, ...]:
        """The stored values, in :data:`TRACK_VALUES` order."""
        return tuple(getattr(self, name) for name in TRACK_VALUES)


# Track fields that carry a value from the wire (all but the id): what a later stage may fill in.
TRACK_VALUES: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Track) if f.name not in ("id",)
)
# Wire spellings of each value field, for the parser: (field, snake_case key, camelCase key).
TRACK_WIRE: tuple[tuple[str, str, str], ...] = tuple(
    (f.name, f.metadata["snake"], f.metadata["camel"])
    for f in dataclasses.fields(Track)
    if "snake" in f.metadata and f.name != "id"
)


def _track_columns() -> tuple[Column, ...]:
    return tuple(
        Column(f.name, f.metadata["kind"]) for f in dataclasses.fields(Track) if f.name != "id"
    )


# --- tables ----------------------------------------------------------------------------------

DELIVERIES = Table(
    "deliveries",
    (
        Column("id", "int", "PRIMARY KEY"),
        Column("received_at", "time", "NOT NULL"),
        Column("source", "text", "NOT NULL"),  # callback | poll | replay
        Column("remote_addr", "text"),
        Column("via_tunnel", "bool"),
        Column("method", "text"),
        Column("path", "text"),  # masked: never the callback token
        Column("headers", "json", "NOT NULL DEFAULT '{}'"),  # credential-like ones dropped
        Column("body", "blob"),
        Column("status", "int"),
        Column("verdict", "text", "NOT NULL"),  # accepted | duplicate | unconfirmed | rejected
        Column("reason", "text"),
        Column("task_id", "text"),
        Column("replay_of", "int"),
    ),
)

TASKS = Table(
    "tasks",
    (
        Column("task_id", "text", "PRIMARY KEY"),
        Column("state", "text", "NOT NULL"),
        Column("stage", "text"),
        Column("reason", "text"),  # why we gave up (unknown/expired)
        Column("code", "int"),
        Column("msg", "text"),
        Column("error", "text"),
        Column("callback_type", "text"),
        Column("source", "text"),
        Column("service_status", "text"),
        Column("parent_task_id", "text"),
        Column("audio_id", "text"),
        Column("infill_start_s", "real"),
        Column("infill_end_s", "real"),
        Column("prompt", "text"),
        Column("tags", "text"),
        Column("title", "text"),
        Column("negative_tags", "text"),
        Column("full_lyrics", "text"),
        Column("params", "json"),
        Column("submitted_at", "time"),
        Column("first_seen_at", "time", "NOT NULL"),
        Column("completed_at", "time"),
        Column("poll_count", "count"),
        Column("unknown_polls", "count"),
        # deliveries under a reused signature that would change results, kept but not
        # applied until the service confirms (a poll); 0 once it has answered
        Column("unconfirmed", "count"),
        Column("last_polled_at", "time"),
        Column("updated_at", "time", "NOT NULL"),
    ),
)

TRACKS = Table(
    "tracks",
    (
        Column("task_id", "text", "NOT NULL"),
        Column("track_id", "text", "NOT NULL"),
        *_track_columns(),
        Column("received_at", "time", "NOT NULL"),  # where the track first came from
        Column("source", "text", "NOT NULL"),
        Column("delivery_id", "int"),
    ),
    ("PRIMARY KEY (task_id, track_id)",),
)

RATINGS = Table(
    "ratings",
    (
        Column("task_id", "text", "NOT NULL"),
        Column("track_id", "text", "NOT NULL"),
        Column("stars", "int", "CHECK (stars IS NULL OR stars BETWEEN 1 AND 5)"),
        Column("note", "text"),
        Column("picked", "bool"),
        Column("blind", "bool"),  # the stars were given without knowing which take it was
        Column("updated_at", "time", "NOT NULL"),
    ),
    ("PRIMARY KEY (task_id, track_id)",),
)

META = Table("meta", (Column("key", "text", "PRIMARY KEY"), Column("value", "text")))

# Which body each webhook signature first came with (the signature covers task_id.timestamp,
# not the body), shared by every process on the store; kept while the signature is fresh.
SIGNATURES = Table(
    "signatures",
    (
        Column("task_id", "text", "NOT NULL"),
        Column("ts", "int", "NOT NULL"),
        Column("body_sha256", "text", "NOT NULL"),
        Column("seen_at", "time", "NOT NULL"),
    ),
    ("PRIMARY KEY (task_id, ts)",),
)

# Blind listening (widgets/blind.py): one row per answered trial, with the hidden mapping.
# ABX: ``mapping`` is {"A": track, "B": track, "X": track} and ``answer`` "A" or "B";
# blind rating: ``mapping`` is {slot: track} (the order shown) and ``answer`` {track: stars}.
LISTENING = Table(
    "listening_trials",
    (
        Column("id", "int", "PRIMARY KEY"),
        Column("session_id", "text", "NOT NULL"),
        Column("trial", "int", "NOT NULL CHECK (trial >= 1)"),
        Column("mode", "text", "NOT NULL CHECK (mode IN ('abx', 'rating'))"),
        Column("task_id", "text"),  # the task whose takes were heard
        Column("track_1", "text"),  # the ABX pair, as chosen (a take, a take or the original)
        Column("track_2", "text"),
        Column("mapping", "json", "NOT NULL"),
        Column("answer", "json"),
        Column("correct", "int", "CHECK (correct IS NULL OR correct IN (0, 1))"),  # ABX only
        Column("started_at", "time"),  # when the trial was first shown
        Column("answered_at", "time", "NOT NULL"),
    ),
    ("UNIQUE (session_id, trial)",),
)

# WAV conversions and recoveries asked for through this store's receiver: a job of the
# service with its own id, belonging to an original task (and, for WAV, one of its tracks).
MEDIA_JOBS = Table(
    "media_jobs",
    (
        Column("job_id", "text", "PRIMARY KEY"),  # the WAV / recovery task id
        Column("kind", "text", "NOT NULL CHECK (kind IN ('wav', 'recovery'))"),
        Column("task_id", "text", "NOT NULL"),  # the original task
        Column("audio_id", "text"),  # the track converted (WAV); None for a recovery
        Column("state", "text", "NOT NULL"),  # pending | succeeded | failed
        Column("code", "int"),
        Column("msg", "text"),
        Column("error", "text"),
        Column("url", "text"),  # the WAV file's URL
        Column("source", "text"),  # callback | poll | replay: what decided it
        Column("submitted_at", "time", "NOT NULL"),
        Column("completed_at", "time"),
        Column("poll_count", "count"),
        Column("last_polled_at", "time"),
        Column("updated_at", "time", "NOT NULL"),
    ),
)


# One row per job of a batch (``snb.run_batch``), written before its request is sent, so a
# re-run after a crash knows what was sent.  ``state``: queued | sending | submitted |
# uncertain | rejected | skipped | over_budget; succeeded/failed come from its task's row.
BATCH_JOBS = Table(
    "batch_jobs",
    (
        Column("key", "text", "PRIMARY KEY"),  # sha256 of the batch name + normalized params
        Column("batch", "text", "NOT NULL"),
        Column("row", "int", "NOT NULL"),
        Column("kind", "text", "NOT NULL"),  # section | lines
        Column("params", "json", "NOT NULL"),
        Column("state", "text", "NOT NULL"),
        Column("task_id", "text"),
        Column("error", "text"),
        Column("sends", "count"),  # requests sent for it (a resubmitted uncertain row: 2)
        Column("created_at", "time", "NOT NULL"),
        Column("sent_at", "time"),
        Column("updated_at", "time", "NOT NULL"),
    ),
)

# What WAV conversions and recoveries say about a track (the track's own URLs are updated in
# ``tracks`` by a recovery; this keeps the WAV link and the recovery's outcome).
TRACK_MEDIA = Table(
    "track_media",
    (
        Column("task_id", "text", "NOT NULL"),
        Column("track_id", "text", "NOT NULL"),
        Column("wav_url", "text"),
        Column("wav_error", "text"),  # why the last WAV conversion failed
        Column("recovery", "text"),  # recovered | failed: the last recovery's outcome
        Column("audio_error", "text"),  # the service's error text for a failed recovery
        Column("recovered_at", "time"),
        Column("updated_at", "time", "NOT NULL"),
    ),
    ("PRIMARY KEY (task_id, track_id)",),
)

# The local copy of each track's audio (``<store>.audio/<track_id>.<ext>``): which URL it came
# from, and a URL that answered 404/410 (gone: the service's copy expired).
ARCHIVE = Table(
    "archive",
    (
        Column("task_id", "text", "NOT NULL"),
        Column("track_id", "text", "NOT NULL"),
        Column("url", "text"),  # the URL the archived file was downloaded from
        Column("path", "text"),  # the file's name in the archive folder (None: not archived)
        Column("bytes", "count"),
        Column("archived_at", "time"),
        Column("gone_url", "text"),  # a URL that answered 404/410
        Column("gone_status", "int"),
        Column("error", "text"),  # the last failure, in words (host only, never a path)
        Column("updated_at", "time", "NOT NULL"),
    ),
    ("PRIMARY KEY (task_id, track_id)",),
)

TABLES = (
    META,
    DELIVERIES,
    TASKS,
    TRACKS,
    RATINGS,
    SIGNATURES,
    LISTENING,
    MEDIA_JOBS,
    TRACK_MEDIA,
    BATCH_JOBS,
    ARCHIVE,
)

# --- records passed to the store ------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """A submitted task as recorded (no secrets, no callback URL)."""

    task_id: str
    parent_task_id: str | None = None
    audio_id: str | None = None
    infill_start_s: float | None = None
    infill_end_s: float | None = None
    prompt: str | None = None
    tags: str | None = None
    title: str | None = None
    negative_tags: str | None = None
    full_lyrics: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    submitted_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class MediaSubmission:
    """A WAV conversion or recovery asked for: the service's job id, its ``kind`` (``wav`` |
    ``recovery``), the original ``task_id`` it belongs to and, for WAV, the track."""

    job_id: str
    kind: str
    task_id: str
    audio_id: str | None = None
    submitted_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Delivery:
    """What arrived: one HTTP request (or one poll answer), before it is judged."""

    body: bytes
    source: str = "callback"  # callback | poll | replay
    remote_addr: str | None = None
    via_tunnel: bool = False
    method: str | None = "POST"
    path: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    received_at: float = field(default_factory=time.time)
    replay_of: int | None = None


@dataclass(frozen=True)
class Trial:
    """One answered blind-listening trial (a row of :data:`LISTENING`).

    ABX: ``mapping`` {"A", "B", "X"} -> track id, ``answer`` "A" or "B", ``correct``;
    blind rating: ``mapping`` {slot: track id} in the order shown, ``answer`` {track: stars}.
    """

    session_id: str
    trial: int
    mode: str  # abx | rating
    mapping: Mapping[str, str]
    answer: Any
    task_id: str | None = None
    track_1: str | None = None
    track_2: str | None = None
    correct: bool | None = None
    started_at: float | None = None
    answered_at: float = field(default_factory=time.time)
