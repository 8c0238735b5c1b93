"""The client's lyrics endpoints: a song's timestamped lyrics, and replacing lines of it.

The bodies of :meth:`SunoClient.timestamped_lyrics <suno_nb.client.SunoClient.timestamped_lyrics>`
and :meth:`SunoClient.replace_lines <suno_nb.client.SunoClient.replace_lines>`, as functions
of the client (kept out of ``client.py``, which holds the submit endpoints).

Timestamped lyrics cost a request, so they are cached: in the receiver's store (its ``meta``
table, one row per ``(task_id, audio_id)``, so they survive a restart) when the client has a
receiver with a store, else in the client instance.

Floors: beside ``client_base``; it reaches the client only through the object passed in.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any

from .errors import ApiError, NetworkError, PayloadError, SectionValidationError
from .lyrics import plan_lines, words_frame
from .rules import check_options, check_url, validate_text

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("suno_nb.client")

ENDPOINT = "timestamped-lyrics"
META_PREFIX = "timestamped-lyrics:"  # + task_id + ":" + audio_id: the store's meta key
_INSTANCE_CACHE = "_timestamped_lyrics_cache"


def _ids(client: Any, task_id: object, audio_id: object) -> tuple[str, str]:
    out = []
    for name, value in (("task_id", task_id), ("audio_id", audio_id)):
        text = validate_text(name, value, required=True, provider=client.provider)
        out.append((text or "").strip())
    return out[0], out[1]


def _store(client: Any, receiver: Any) -> Any:
    """The store of ``receiver`` (else the client's), if it has one."""
    store = getattr(receiver if receiver is not None else client.receiver, "store", None)
    return store if hasattr(store, "get_meta") and hasattr(store, "set_meta") else None


def _cached(client: Any, receiver: Any, key: str) -> dict[str, Any] | None:
    store = _store(client, receiver)
    if store is None:
        found: dict[str, Any] | None = vars(client).get(_INSTANCE_CACHE, {}).get(key)
        return found
    raw = store.get_meta(key)
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("alignedWords"), list):
        log.warning("ignoring a damaged cached lyrics row %r; fetching again", key)
        return None
    return doc


def _keep(client: Any, receiver: Any, key: str, doc: dict[str, Any]) -> None:
    store = _store(client, receiver)
    if store is None:
        vars(client).setdefault(_INSTANCE_CACHE, {})[key] = doc
    else:
        store.set_meta(key, json.dumps(doc, ensure_ascii=False))


def _song_lyrics(client: Any, task_id: str, audio_id: str) -> str | None:
    """The lyrics the track sings, from its task's record-info: a replacement's
    ``fullLyrics``, else the track's ``prompt`` (None when the lookup fails)."""
    try:
        info = client.get_details(task_id)
    except (ApiError, NetworkError, PayloadError) as exc:
        log.info("no lyrics text for %s (%s); sections from the aligned words only", task_id, exc)
        return None
    full = info.param.get("fullLyrics")
    if isinstance(full, str) and full.strip():
        return full
    track = next((t for t in info.tracks if t.id == audio_id), None)
    return track.prompt if track is not None and track.prompt else None


def timestamped_lyrics(
    client: Any, *, task_id: str, audio_id: str, receiver: Any = None
) -> pd.DataFrame:
    """A track's words with their times (:func:`suno_nb.lyrics.words_frame`).

    One ``get-timestamped-lyrics`` request and one record-info GET (for the lyrics text and
    their ``[Chorus]``-style sections) the first time; afterwards from the cache.  The
    frame's ``attrs`` hold ``task_id``, ``audio_id``, ``lyrics``, ``hoot_cer``,
    ``is_streamed`` and ``waveform``.  ``receiver``: whose store caches them (default: the
    client's receiver; without one, the client itself).
    """
    task_id, audio_id = _ids(client, task_id, audio_id)
    if ENDPOINT not in client.provider.routes:
        raise SectionValidationError(
            "provider",
            f"{client.provider.name} has no {ENDPOINT!r} route in its contract table",
            limit="a timestamped-lyrics route",
        )
    key = f"{META_PREFIX}{task_id}:{audio_id}"
    doc = _cached(client, receiver, key)
    if doc is None:
        data = client._request("POST", ENDPOINT, body={"taskId": task_id, "audioId": audio_id})
        aligned = data.get("alignedWords") if isinstance(data, dict) else None
        if not isinstance(aligned, list) or not all(isinstance(w, dict) for w in aligned):
            raise PayloadError(
                f"{ENDPOINT}: data.alignedWords is not a list of objects "
                f"(got {type(aligned).__name__})"
            )
        assert isinstance(data, dict)
        doc = {
            "alignedWords": aligned,
            "lyrics": _song_lyrics(client, task_id, audio_id),
            "hootCer": data.get("hootCer"),
            "isStreamed": data.get("isStreamed"),
            "waveformData": data.get("waveformData"),
        }
        _keep(client, receiver, key, doc)
    frame = words_frame(doc["alignedWords"], doc.get("lyrics"))
    frame.attrs.update(
        task_id=task_id,
        audio_id=audio_id,
        hoot_cer=doc.get("hootCer"),
        is_streamed=doc.get("isStreamed"),
        waveform=doc.get("waveformData"),
    )
    return frame


def default_prompt(new_lyrics: str, tags: str, limit: int | None = None) -> str:
    """The ``prompt`` sent when none is given: the new lines themselves (sunoapi.org: "the
    replacement's lyrics / description"), or the style when they are over ``limit``."""
    if limit is None or len(new_lyrics) <= limit:
        return new_lyrics
    return f"new lyrics, in the style of: {tags}"[:limit]


def replace_lines(
    client: Any,
    *,
    task_id: str,
    audio_id: str,
    lines: object,
    new_lyrics: str,
    tags: str,
    title: str,
    prompt: str | None = None,
    full_lyrics: str | None = None,
    original_duration: float | None = None,
    **options: Any,
) -> Any:
    """Replace some lines of a track with ``new_lyrics``; returns the ``ReplaceJob``.

    ``lines``: what :func:`suno_nb.lyrics.plan_lines` takes ("Chorus 2", a line number, a
    range or list, a fragment of one line).  The section is planned from the track's
    timestamped lyrics (widened to the provider's minimum, edges in silences), the song's
    lyrics (``full_lyrics``, default: from record-info) get the chosen lines replaced, and
    the request is :meth:`replace_section` with those seconds, ``fullLyrics`` and, where the
    provider documents the field, ``lyrics=new_lyrics`` (the segment's lyrics).  ``prompt``
    defaults to :func:`default_prompt`.  ``options`` go to ``replace_section`` as they are
    (``negative_tags``, ``callback_url``, ``receiver``, ...).  Everything is checked before
    the replace request; the job records ``lines``, ``span_*`` and ``widened``.
    """
    task_id, audio_id = _ids(client, task_id, audio_id)
    checked = validate_text("new_lyrics", new_lyrics, required=True, provider=client.provider)
    new_lyrics = checked or ""
    words = timestamped_lyrics(
        client, task_id=task_id, audio_id=audio_id, receiver=options.get("receiver")
    )
    duration = original_duration
    if duration is None:
        duration = client._original_duration(task_id, audio_id)
    if duration is None:
        raise SectionValidationError(
            "original_duration",
            "the original's length could not be looked up; pass original_duration=... (s)",
            limit="required",
        )
    plan = plan_lines(
        words,
        lines,
        duration=duration,
        provider=client.provider,
        new_lyrics=new_lyrics,
        full_lyrics=full_lyrics,
    )
    if "lyrics" in getattr(client.provider, "fields", {}):
        options.setdefault("lyrics", new_lyrics)  # the segment's lyrics, where documented
    job = client.replace_section(
        task_id=task_id,
        audio_id=audio_id,
        prompt=prompt
        if prompt is not None
        else default_prompt(new_lyrics, tags, client.provider.max_chars.get("prompt")),
        tags=tags,
        title=title,
        infill_start_s=plan.start_s,
        infill_end_s=plan.end_s,
        full_lyrics=plan.full_lyrics,
        original_duration=duration,
        **options,
    )
    return dataclasses.replace(
        job,
        lines=plan.lines,
        span_start_s=plan.span_start_s,
        span_end_s=plan.span_end_s,
        widened=plan.widened,
    )


def check_lines(
    client: Any,
    *,
    task_id: str,
    audio_id: str,
    lines: object,
    new_lyrics: str,
    tags: str,
    title: str,
    prompt: str | None = None,
    full_lyrics: str | None = None,
    original_duration: float | None = None,
    negative_tags: str | None = None,
    callback_url: str | None = None,
    receiver: Any = None,
    **options: Any,
) -> None:
    """The checks of :func:`replace_lines` that need no request: the ids, texts and
    optional fields; the lines themselves too when the track's timed lyrics are cached and
    ``original_duration`` is given.  Raises what ``replace_lines`` raises; sends nothing."""
    task_id, audio_id = _ids(client, task_id, audio_id)
    p = client.provider
    for name, value, required in (
        ("new_lyrics", new_lyrics, True),
        ("tags", tags, True),
        ("title", title, True),
        ("prompt", prompt, False),
        ("full_lyrics", full_lyrics, False),
        ("negative_tags", negative_tags, False),
    ):
        validate_text(name, value, required=required, provider=p)
    check_url("callback_url", callback_url)
    check_options(p, **options)
    doc = _cached(client, receiver, f"{META_PREFIX}{task_id}:{audio_id}")
    if doc is not None and original_duration is not None:
        words = words_frame(doc["alignedWords"], doc.get("lyrics"))
        plan_lines(
            words,
            lines,
            duration=float(original_duration),
            provider=p,
            new_lyrics=new_lyrics,
            full_lyrics=full_lyrics,
        )
