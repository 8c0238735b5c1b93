"""The checks of a replace-section request, apart from sending it.

:meth:`SunoClient.replace_section <suno_nb.client.SunoClient.replace_section>` runs them
before its request; :func:`check_replace_section` (the client's method of that name) runs
them alone, so a batch can be previewed with exactly the client's rules and nothing sent.

Floors: beside ``client_base``; it reaches the client only through the object passed in.
"""

from __future__ import annotations

from typing import Any

from .rules import (
    check_options,
    check_url,
    missing_required,
    original_duration_s,
    replace_mode,
    required_by,
    validate_section,
    validate_text,
)


def required_text(field: str, value: object, provider: Any) -> str:
    """``value`` checked as a required text field of ``provider``."""
    text = validate_text(field, value, required=True, provider=provider)
    assert text is not None  # validate_text raised otherwise
    return text


def check_replace_section(client: Any, **kwargs: Any) -> dict[str, Any]:
    """Check ``kwargs`` exactly as ``replace_section`` would, and send nothing.

    Returns the checked arguments (snake_case, the section rounded as it would be sent).
    The 50 % rule is checked only when ``original_duration`` is given: unlike
    ``replace_section``, nothing is looked up.  Raises what ``replace_section`` raises for
    bad input (:class:`~suno_nb.errors.SectionValidationError` naming the field and the
    limit; ``TypeError`` for an argument it does not take).
    """
    args, _url, _rx = prepare_replace(client, lookup=False, **kwargs)
    return args


def prepare_replace(
    client: Any,
    *,
    lookup: bool,
    prompt: str,
    tags: str,
    title: str,
    infill_start_s: float,
    infill_end_s: float,
    full_lyrics: str | None = None,
    task_id: str | None = None,
    audio_id: str | None = None,
    upload_url: str | None = None,
    model: str | None = None,
    negative_tags: str | None = None,
    callback_url: str | None = None,
    original_duration: float | None = None,
    receiver: Any = None,
    lyrics: str | None = None,
    vocal_gender: str | None = None,
    style_weight: float | None = None,
    weirdness_constraint: float | None = None,
    audio_weight: float | None = None,
    variety: int | None = None,
    persona_id: str | None = None,
    persona_model: str | None = None,
) -> tuple[dict[str, Any], str | None, Any]:
    """Every check of a replace-section request (``lookup``: may GET the original's
    duration); returns the checked arguments, the callback URL and the receiver."""
    p, endpoint = client.provider, "replace-section"
    prompt = required_text("prompt", prompt, p)
    tags = required_text("tags", tags, p)
    title = required_text("title", title, p)
    full_lyrics = validate_text("full_lyrics", full_lyrics, required=False, provider=p)
    if full_lyrics is None and required_by(p, endpoint, "full_lyrics"):
        raise missing_required("full_lyrics", p, endpoint)
    negative_tags = validate_text("negative_tags", negative_tags, required=False, provider=p)
    options = check_options(
        p,
        lyrics=lyrics,
        vocal_gender=vocal_gender,
        style_weight=style_weight,
        weirdness_constraint=weirdness_constraint,
        audio_weight=audio_weight,
        variety=variety,
        persona_id=persona_id,
        persona_model=persona_model,
    )
    # A deprecated model's warning points at the caller of replace_section (or of check_*).
    source = replace_mode(task_id, audio_id, upload_url, model, p, stacklevel=5)
    callback_url = check_url("callback_url", callback_url)
    duration = original_duration_s(original_duration)

    # Everything that needs no request first: a bad section or an unreachable callback
    # URL is refused before the original's length is looked up.
    section = validate_section(infill_start_s, infill_end_s, duration, section=p.section)
    rx = client._pick_receiver(receiver)
    callback_url = client._callback_for(callback_url, rx, required=False)
    if lookup and duration is None and "task_id" in source:
        duration = client._original_duration(source["task_id"], source["audio_id"])
        section = validate_section(infill_start_s, infill_end_s, duration, section=p.section)
    args: dict[str, Any] = {
        **source,
        "prompt": prompt,
        "tags": tags,
        "title": title,
        "infill_start_s": section.start,
        "infill_end_s": section.end,
        "negative_tags": negative_tags,
        "full_lyrics": full_lyrics,
        **options,
    }
    return args, callback_url, rx
