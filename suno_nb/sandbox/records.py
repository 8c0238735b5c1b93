"""The sandbox's records: songs and tracks as the API shows them, tasks as the service
keeps them, and the cache of rendered audio (a pure function of a track's recipe)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import synth, takes
from .faults import Failure, Faults

# --- records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How a track's audio is made: a synthesized song plus replacements, in order.

    Audio is a pure function of the recipe, so it is rendered lazily and can be dropped
    from the cache and rebuilt at any time.
    """

    base_seed: int
    duration: float
    ops: tuple[tuple[Any, ...], ...] = ()  # (start s, end s, variant seed, *(fault, value))


@dataclass(frozen=True)
class SongTrack:
    """One track as the API describes it (callback field names, Python attribute style)."""

    id: str
    audio_url: str
    stream_audio_url: str
    image_url: str
    prompt: str
    model_name: str
    title: str
    tags: str
    create_time: str
    duration: float

    def callback_item(self) -> dict[str, Any]:
        """The track as a callback's ``data.data[i]`` (snake_case, seed order)."""
        return {
            "id": self.id,
            "audio_url": self.audio_url,
            "stream_audio_url": self.stream_audio_url,
            "image_url": self.image_url,
            "prompt": self.prompt,
            "model_name": self.model_name,
            "title": self.title,
            "tags": self.tags,
            "createTime": self.create_time,
            "duration": self.duration,
        }

    def record_item(self) -> dict[str, Any]:
        """The track as record-info's ``response.sunoData[i]`` (camelCase)."""
        return {
            "id": self.id,
            "audioUrl": self.audio_url,
            "streamAudioUrl": self.stream_audio_url,
            "imageUrl": self.image_url,
            "prompt": self.prompt,
            "modelName": self.model_name,
            "title": self.title,
            "tags": self.tags,
            "createTime": self.create_time,
            "duration": self.duration,
        }


@dataclass(frozen=True)
class Song:
    """A finished original made by :meth:`Sandbox.create_song`."""

    task_id: str
    tracks: list[SongTrack]

    @property
    def audio_id(self) -> str:
        """The first track's id: what a replace-section request names as ``audioId``."""
        return self.tracks[0].id

    @property
    def duration(self) -> float:
        return self.tracks[0].duration

    @property
    def audio_url(self) -> str:
        return self.tracks[0].audio_url

    @property
    def title(self) -> str:
        return self.tracks[0].title


@dataclass
class TrackRecord:
    id: str
    task_id: str
    index: int
    prompt: str
    model_name: str
    title: str
    tags: str
    create_time: str
    duration: float
    recipe: Recipe


@dataclass
class TaskRecord:
    task_id: str
    kind: str  # record-info "type"
    param: dict[str, Any]
    parent_music_id: str
    callback_url: str | None
    cost: float
    created: float  # monotonic
    ready_at: float  # monotonic
    faults: Faults
    tracks: list[TrackRecord] = field(default_factory=list)
    state: str = "pending"  # pending | success | failed
    failure: Failure | None = None
    staged: bool = False  # /generate: text and first callbacks before complete


# --- audio cache --------------------------------------------------------------------------


class AudioCache:
    """Rendered samples and encoded bytes per recipe, LRU-bounded, rendered once at a time."""

    def __init__(self, sr: int, *, max_samples: int = 4, max_encoded: int = 64) -> None:
        self.sr = sr
        self._lock = threading.Lock()
        self._render_lock = threading.Lock()  # one render at a time: bounded CPU and memory
        self._samples: OrderedDict[Recipe, np.ndarray] = OrderedDict()
        self._mp3: OrderedDict[Recipe, bytes] = OrderedDict()
        self._covers: OrderedDict[int, bytes] = OrderedDict()
        self._limits = {"samples": max_samples, "mp3": max_encoded, "covers": max_encoded}

    def _get(self, name: str, cache: OrderedDict, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        with self._render_lock:
            with self._lock:
                if key in cache:  # rendered by another thread meanwhile
                    return cache[key]
            value = make()
        with self._lock:
            cache[key] = value
            while len(cache) > self._limits[name]:
                cache.popitem(last=False)
        return value

    def samples(self, recipe: Recipe) -> np.ndarray:
        """Float32 mono samples (read-only) of ``recipe``."""
        cached = self._lookup(self._samples, recipe)
        if cached is not None:
            return cached
        if recipe.ops:
            parent = self.samples(Recipe(recipe.base_seed, recipe.duration, recipe.ops[:-1]))
        else:
            parent = None

        def make() -> np.ndarray:
            if parent is None:
                x = synth.synthesize_song(recipe.duration, recipe.base_seed, self.sr)
            else:
                start, end, seed, *fx = recipe.ops[-1]  # fx: the task's audio faults, if any
                x = takes.replace_section(
                    parent, start, end, seed, self.sr, base_seed=recipe.base_seed, **dict(fx)
                )
            x.setflags(write=False)
            return x

        return self._get("samples", self._samples, recipe, make)

    def mp3(self, recipe: Recipe) -> bytes:
        """MP3 bytes of ``recipe``."""
        cached = self._lookup(self._mp3, recipe)
        if cached is not None:
            return cached
        x = self.samples(recipe)
        return self._get("mp3", self._mp3, recipe, lambda: synth.encode_mp3(x, self.sr))

    def cover(self, seed: int) -> bytes:
        """PNG cover bytes for ``seed``."""
        return self._get("covers", self._covers, seed, lambda: synth.cover_png(seed))

    def peek_mp3(self, recipe: Recipe) -> bytes | None:
        """MP3 bytes of ``recipe`` if they are cached (never renders)."""
        found: bytes | None = self._lookup(self._mp3, recipe)
        return found

    def peek_cover(self, seed: int) -> bytes | None:
        """PNG cover bytes for ``seed`` if they are cached (never renders)."""
        found: bytes | None = self._lookup(self._covers, seed)
        return found

    def _lookup(self, cache: OrderedDict, key: Any) -> Any:
        with self._lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        return None
