"""The sandbox's request checks, read from the provider's contract table.

Each endpoint refuses the way its code table says: replace-section answers 422 for a
validation error and 402 for missing credits; the other endpoints use the family's generic
table (400, 413 for a too-long string, 429 for missing credits).  Messages name the
request field in the provider's spelling (``fullLyrics``, ``infillEndS``; ``full_lyrics``
inside ``input`` on kie.ai's task API) and the limit, like the service's.  The optional
fields (``lyrics``, the weights, ``variety``, ...) are checked against their FieldSpec.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from ..contract import API_FIELDS, Provider
from ..errors import SectionValidationError
from ..rules import check_option, validate_section, validate_text

Reply = tuple[int, dict[str, Any]]  # (HTTP status, JSON body)
DROPPED = 0  # the status of a reply that must never reach the client (Faults.drop_connection)

REPLACE = "replace-section"
GENERATE = "generate"
_SNAKE = {camel: snake for snake, camel in API_FIELDS.items()}


def ok(data: Any) -> Reply:
    return 200, {"code": 200, "msg": "success", "data": data}


def fail(code: int, msg: str) -> Reply:
    # The hosted API answers HTTP 200 and puts the error in the JSON ``code``.
    return 200, {"code": code, "msg": msg}


class Rejected(Exception):
    """A request refused with ``reply``."""

    def __init__(self, reply: Reply):
        super().__init__(reply[1].get("msg"))
        self.reply = reply


def code_of(provider: Provider, endpoint: str, kind: str, default: int) -> int:
    """The first code of ``kind`` in ``endpoint``'s table (e.g. 422 for validation on
    replace-section, 400 elsewhere)."""
    table = provider.codes.get(endpoint, {})
    return next((c for c, info in sorted(table.items()) if info.kind == kind), default)


def _spell(provider: Provider, text: str) -> str:
    """Python argument names in ``text`` as the provider's request fields."""
    for snake in API_FIELDS:
        text = text.replace(snake, provider.api_name(snake))
    return text


def invalid(provider: Provider, endpoint: str, exc: SectionValidationError) -> Rejected:
    """A rules error as the endpoint's validation answer (413 for a length on /generate)."""
    too_long = isinstance(exc.limit, int) and "characters long" in str(exc)
    code = code_of(provider, endpoint, "validation", 400)
    if too_long and endpoint != REPLACE:
        code = 413
    return Rejected(fail(code, _spell(provider, str(exc))))


class Fields:
    """Typed reads of one request body, refusing per ``endpoint``'s table."""

    def __init__(self, provider: Provider, endpoint: str, body: Any):
        if not isinstance(body, dict):
            raise Rejected(
                fail(
                    code_of(provider, endpoint, "validation", 400),
                    "request body must be a JSON object",
                )
            )
        self.p, self.endpoint, self.body = provider, endpoint, body
        self.snake = {provider.api_name(name): name for name in API_FIELDS} | _SNAKE

    def refuse(self, msg: str) -> Rejected:
        return Rejected(fail(code_of(self.p, self.endpoint, "validation", 400), msg))

    def required(self, name: str) -> bool:
        return self.p.requires(self.endpoint, name)

    def text(
        self, name: str, *, required: bool | None = None, limit_key: str | None = None
    ) -> str | None:
        need = self.required(name) if required is None else required
        value = self.body.get(name)
        if need and (value is None or (isinstance(value, str) and not value.strip())):
            source = self.p.sources.get(self.endpoint, self.p.name)
            raise self.refuse(f"{name}: is required ({source})")
        try:
            return validate_text(
                self.snake.get(name, name),
                value,
                required=False,
                provider=self.p,
                limit_key=limit_key,
            )
        except SectionValidationError as exc:
            raise invalid(self.p, self.endpoint, exc) from None

    def url(self, name: str, *, required: bool | None = None) -> str | None:
        value = self.text(name, required=required)
        if value is None:
            return None
        try:
            parts = urlsplit(value)
        except ValueError:  # e.g. an unbalanced IPv6 bracket
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise self.refuse(f"{name}: must be an http:// or https:// URL")
        return value

    def flag(self, name: str) -> bool:
        value = self.body.get(name, False)
        if not isinstance(value, bool):
            raise self.refuse(f"{name}: must be true or false, got {value!r}")
        return value

    def options(self) -> dict[str, Any]:
        """The optional fields present (request spelling -> value), each within its spec."""
        out: dict[str, Any] = {}
        for spec in self.p.fields.values():
            value = self.body.get(spec.api)
            if value is None:
                continue
            try:
                out[spec.api] = check_option(spec, value)
            except SectionValidationError:
                raise self.refuse(f"{spec.api}: must be {spec.describe()}, got {value!r}") from None
        return out

    def model(self, *, required: bool) -> str | None:
        value = self.body.get("model")
        if value is None and not required:
            return None
        if value not in self.p.models:
            raise self.refuse(f"model: must be one of {', '.join(self.p.models)}, got {value!r}")
        return str(value)


@dataclass(frozen=True)
class ReplaceRequest:
    """A replace-section body that passed every check that needs no parent."""

    prompt: str
    tags: str
    title: str
    start: float
    end: float
    callback_url: str | None
    full_lyrics: str | None
    task_id: str | None = None
    audio_id: str | None = None
    upload_url: str | None = None
    model: str | None = None
    options: dict[str, Any] | None = None  # the optional fields sent (request spelling)


def _task_input(provider: Provider, body: Any) -> tuple[Any, str | None]:
    """kie.ai's createTask body: check its ``model`` and ``callBackUrl``; return its
    ``input`` (the fields) and the callback URL."""
    outer = Fields(provider, REPLACE, body)
    expected = provider.task_models.get(REPLACE)
    if body.get("model") != expected:
        raise outer.refuse(f"model: must be {expected!r}, got {body.get('model')!r}")
    callback_url = outer.url(provider.api_name("callback_url"), required=False)
    fields = body.get("input")
    if not isinstance(fields, dict):
        raise outer.refuse("input: must be an object with the task's fields")
    return fields, callback_url


def parse_replace(provider: Provider, body: Any) -> ReplaceRequest:
    """Check a replace-section body (fields, mode, options, duration-free section rules);
    on kie.ai's task API the createTask body with its snake_case ``input``."""
    n = provider.api_name
    if provider.api == "task":
        Fields(provider, REPLACE, body)  # refuses a body that is not an object
        body, callback_url = _task_input(provider, body)
        f = Fields(provider, REPLACE, body)
    else:
        f = Fields(provider, REPLACE, body)
        callback_url = f.url(n("callback_url"), required=False)
    prompt, tags, title = (f.text(name, required=True) for name in ("prompt", "tags", "title"))
    full_lyrics = f.text(n("full_lyrics"))
    f.text(n("negative_tags"), required=False)
    options = f.options()
    mode1 = body.get(n("task_id")) is not None or body.get(n("audio_id")) is not None
    mode2 = body.get(n("upload_url")) is not None or body.get("model") is not None
    if mode2 and not provider.upload_mode:
        raise f.refuse(
            f"{n('upload_url')}: {provider.name} names the original by {n('task_id')} + "
            f"{n('audio_id')} only"
        )
    if mode1 == mode2:
        raise f.refuse(
            f"give either {n('task_id')} + {n('audio_id')} (a generated track) or "
            f"{n('upload_url')} + model (your own audio)" + (", not both" if mode1 else "")
        )
    start, end = body.get(n("infill_start_s")), body.get(n("infill_end_s"))
    try:
        validate_section(start, end, section=provider.section)
    except SectionValidationError as exc:
        raise invalid(provider, REPLACE, exc) from None
    request = ReplaceRequest(
        prompt=prompt or "",
        tags=tags or "",
        title=title or "",
        start=float(start),  # validate_section checked both are numbers
        end=float(end),
        callback_url=callback_url,
        full_lyrics=full_lyrics,
        options=options,
    )
    if mode1:
        return replace(
            request,
            task_id=f.text(n("task_id"), required=True),
            audio_id=f.text(n("audio_id"), required=True),
        )
    return replace(
        request,
        upload_url=f.url(n("upload_url"), required=True),
        model=f.model(required=True),
    )


@dataclass(frozen=True)
class GenerateRequest:
    """A valid ``/generate`` body."""

    custom: bool
    instrumental: bool
    model: str
    prompt: str
    style: str
    title: str
    callback_url: str | None


def parse_generate(provider: Provider, body: Any) -> GenerateRequest:
    """Check a ``/generate`` body; in non-custom mode the style and title are made up."""
    f = Fields(provider, GENERATE, body)
    custom = f.flag("customMode")
    instrumental = f.flag("instrumental")
    model = f.model(required=f.required("model")) or provider.default_model
    callback_url = f.url("callBackUrl")
    if custom:
        style = f.text("style", required=True) or ""
        title = f.text("title", required=True) or ""
        prompt = f.text("prompt", required=not instrumental) or ""
    else:
        prompt = f.text("prompt", required=True, limit_key="prompt_non_custom") or ""
        style = "pop"
        title = " ".join(prompt.split()[:5]).title()[:80] or "Untitled"
    return GenerateRequest(custom, instrumental, model, prompt, style, title, callback_url)
