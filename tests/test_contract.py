"""The contract pinned to the providers' docs (tests/data/contract/, sources in its README).

Three directions: the contract table (suno_nb.contract) says what the pages say; the client
sends the pages' example requests and understands their answers; the sandbox answers in the
same shapes.  Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from suno_nb.client import SunoClient
from suno_nb.contract import (
    API_FIELDS,
    KINDS,
    PROVIDERS,
    CodeInfo,
    Provider,
    SectionRules,
    get_provider,
)
from suno_nb.errors import (
    ApiValidationError,
    InsufficientCreditsError,
    RateLimitError,
)
from suno_nb.payloads import parse_callback, parse_record_info
from suno_nb.sandbox import Sandbox
from tests.test_client import RecordingServer

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "contract"
KEY = "sk-contract-test-key-0123456789"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def arguments(doc: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A documented request body as the client's keyword arguments (API_FIELDS reversed)."""
    snake = {camel: name for name, camel in API_FIELDS.items()}
    return {snake.get(k, k): v for k, v in doc.items()} | extra


def shape(obj: Any) -> Any:
    """Keys and JSON types, recursively (lists: the shape of their first item)."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in sorted(obj.items())}
    if isinstance(obj, list):
        return [shape(obj[0])] if obj else []
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, (int, float)):
        return "number"
    return type(obj).__name__


@pytest.fixture
def server():
    srv = RecordingServer().start()
    yield srv
    srv.stop()


# --- the table says what the pages say ---------------------------------------------------------


KIND_OF_MEANING = {
    "success": "ok",
    "unauthorized": "auth",
    "insufficient credits": "credits",
    "not found": "not_found",
    "conflict": "conflict",
    "validation error": "validation",
    "bad parameters": "validation",
    "too long": "validation",
    "rate limited": "rate_limit",
    "rate limit": "rate_limit",
    "calls too frequent": "rate_limit",
    "could not fetch a resource": "resource",
    "maintenance": "maintenance",
    "server error": "server",
}


@pytest.mark.parametrize("endpoint", ["replace-section", "record-info"])
def test_code_tables_match_the_pages(endpoint):
    documented = load("codes.json")["sunoapi.org"][endpoint]
    table = get_provider().codes[endpoint]
    assert set(table) == {int(c) for c in documented}
    for code, meaning in documented.items():
        info = table[int(code)]
        expected = "failure" if meaning.startswith("failure") else KIND_OF_MEANING[meaning]
        assert info.kind == expected, (endpoint, code, info)
    # The same number means different things on different endpoints.
    assert get_provider().code("replace-section", 429).kind == "rate_limit"
    assert get_provider().code("record-info", 429).kind == "credits"
    assert get_provider().code("replace-section", 402).kind == "credits"


def test_callback_codes_match_the_seeds():
    documented = load("codes.json")["sunoapi.org"]["callback"]
    assert set(get_provider().codes["callback"]) == {int(c) for c in documented}


def test_each_provider_cites_a_page_for_every_fact():
    for p in PROVIDERS.values():
        for fact in ("replace-section", "section", "generate", "record-info", "credits"):
            assert p.sources[fact].startswith("https://"), (p.name, fact)
        assert p.section.source.startswith("https://")
        assert p.signs_webhooks == p.name.startswith("kie.ai")
        assert "signs_webhooks" in p.sources
    kie = get_provider("kie.ai-legacy")
    assert kie.routes["credits"] == "/api/v1/chat/credit"
    assert not kie.requires("replace-section", "fullLyrics")
    assert "optional" in kie.notes["required.replace-section"]
    # kie.ai's task API requires full_lyrics (snake_case inside "input").
    assert get_provider("kie.ai").requires("replace-section", "full_lyrics")
    org = get_provider("sunoapi.org")
    assert org.requires("replace-section", "fullLyrics")
    assert (org.section.min_s, org.section.max_s, org.section.max_fraction) == (10.0, None, 0.5)
    assert org.requires("generate", "callBackUrl")


def test_provider_is_frozen_and_replace_friendly():
    p = get_provider()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.routes["credits"] = "/elsewhere"  # type: ignore[index]
    rules = dataclasses.replace(p.section, min_s=2.0)
    mine = dataclasses.replace(p, name="mine", section=rules)
    assert isinstance(mine, Provider) and mine.section.min_s == 2.0 and p.section.min_s == 10.0
    with pytest.raises(ValueError, match="max_fraction"):
        SectionRules(min_s=1, max_s=None, max_fraction=1.5, decimals=2, source="x")
    with pytest.raises(ValueError, match="kind"):
        CodeInfo("x", "nonsense")
    assert set(KINDS) >= {i.kind for t in p.codes.values() for i in t.values()}


# Numbers that are section limits in some provider's table: written nowhere but contract/,
# in every module that checks a section (client_base.py only moves bytes: its 0.5 s backoff
# and 60 s Retry-After cap are transport timing, not rules).
LIMITS = {6.0, 10.0, 60.0, 0.5}
CHECKED = [
    "suno_nb/rules.py",
    "suno_nb/client.py",
    "suno_nb/client_errors.py",
    "suno_nb/client_lyrics.py",
    "suno_nb/lyrics/plan.py",
    "suno_nb/sandbox/validate.py",
    "suno_nb/sandbox/service.py",
    "suno_nb/sandbox/submit.py",
    # the submit form and its checks (however the widgets room splits them)
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "suno_nb" / "widgets").glob("*submit*.py")),
]


@pytest.mark.parametrize("path", CHECKED)
def test_no_section_limit_is_written_outside_the_contract(path):
    file = ROOT / path
    if not file.exists():
        pytest.fail(f"{path} is gone: update CHECKED")
    found = [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(file.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, float) and node.value in LIMITS
    ]
    assert found == [], f"{path}: limit-like literals {found}; read them from the contract"


# --- the client sends the pages' requests -------------------------------------------------------


def test_client_sends_the_documented_replace_section_request(server):
    doc = load("sunoapi.org/replace-section.request.json")
    server.reply(
        "POST",
        "/api/v1/generate/replace-section",
        200,
        load("sunoapi.org/replace-section.reply.json"),
    )
    c = SunoClient(KEY, base_url=server.url)
    job = c.replace_section(**arguments(doc, original_duration=198.44))
    [req] = server.requests
    assert req.json == doc
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert job.task_id == "5c79****be8e"


def test_client_sends_the_documented_upload_request(server):
    doc = load("sunoapi.org/replace-section.upload.request.json")
    server.reply(
        "POST",
        "/api/v1/generate/replace-section",
        200,
        load("sunoapi.org/replace-section.reply.json"),
    )
    SunoClient(KEY, base_url=server.url).replace_section(**arguments(doc))
    assert server.requests[0].json == doc


def test_client_sends_kie_ai_request_without_full_lyrics(server):
    doc = load("kie.ai/replace-section.request.json")
    server.reply(
        "POST", "/api/v1/generate/replace-section", 200, load("kie.ai/replace-section.reply.json")
    )
    kie = SunoClient(KEY, base_url=server.url, provider="kie.ai-legacy")
    kie.replace_section(**arguments(doc, original_duration=198.44))
    assert server.requests[0].json == doc


def test_client_sends_the_documented_generate_request(server):
    doc = load("sunoapi.org/generate.request.json")
    server.reply("POST", "/api/v1/generate", 200, load("sunoapi.org/generate.reply.json"))
    job = SunoClient(KEY, base_url=server.url).generate(
        prompt=doc["prompt"],
        style=doc["style"],
        title=doc["title"],
        custom_mode=doc["customMode"],
        instrumental=doc["instrumental"],
        model=doc["model"],
        callback_url=doc["callBackUrl"],
    )
    assert server.requests[0].json == doc
    assert job.task_id == "5c79****be8e"


# --- the client understands the pages' answers --------------------------------------------------


@pytest.mark.parametrize("provider", ["sunoapi.org", "kie.ai-legacy"])
def test_client_parses_record_info_and_credits(server, provider):
    route = get_provider(provider).routes["credits"]
    folder = provider.removesuffix("-legacy")
    server.reply("GET", route, 200, load(f"{folder}/credits.reply.json"))
    server.reply(
        "GET", "/api/v1/generate/record-info", 200, load(f"{folder}/record-info.reply.json")
    )
    c = SunoClient(KEY, base_url=server.url, provider=provider)
    assert c.credits() == 100.0
    info = c.get_details("5c79****be8e")
    assert info.status == "SUCCESS" and info.done
    [track] = info.tracks
    assert (track.id, track.duration, track.title) == ("8551****662c", 198.44, "钢铁侠")
    assert info.param["model"] == "V3_5"
    assert [r.path for r in server.requests] == [route, "/api/v1/generate/record-info"]


def test_client_maps_the_documented_replace_section_errors(server):
    errors = load("sunoapi.org/replace-section.errors.json")
    doc = load("sunoapi.org/replace-section.request.json")
    c = SunoClient(KEY, base_url=server.url, backoff=0.001)
    for code, cls in [
        ("402", InsufficientCreditsError),
        ("422", ApiValidationError),
        ("429", RateLimitError),
    ]:
        server.script.clear()
        server.reply("POST", "/api/v1/generate/replace-section", 200, errors[code])
        with pytest.raises(cls) as info:
            c.replace_section(**arguments(doc, callback_url=None, original_duration=198.44))
        assert info.value.message == errors[code]["msg"] and info.value.code == int(code)


REPLACE_CALLBACKS = [
    "callback.replace-section.complete.json",
    "callback.replace-section.error.json",
    "callback.replace-section.error-null.json",
]
GENERATE_CALLBACKS = [
    "callback.generate.text.json",
    "callback.generate.first.json",
    "callback.generate.complete.json",
    "callback.generate.error.json",
    "callback.generate.failed.json",
    "callback.cover.taskId.json",
]


@pytest.mark.parametrize("name", REPLACE_CALLBACKS + GENERATE_CALLBACKS)
def test_payloads_accept_every_documented_callback(name):
    """The whole callback family (stages, taskId, source_* extras): needs the receiver side
    of issue 12 (payloads.py, helper "store")."""
    body = load(f"sunoapi.org/{name}")
    cb = parse_callback(body)
    assert cb.task_id == "2fac****9f72"
    assert cb.callback_type == body["data"]["callbackType"]


# --- the sandbox answers in the same shapes ------------------------------------------------------


@pytest.fixture
def sb():
    with Sandbox(delay=0.6, retry_backoff=0.05, callback_timeout=2.0) as sandbox:
        yield sandbox


def _auth(sb: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sb.api_key}"}


def test_sandbox_replies_have_the_documented_shapes(sb):
    song = sb.create_song(duration=60)
    body = load("sunoapi.org/replace-section.request.json")
    body.update(taskId=song.task_id, audioId=song.audio_id, callBackUrl=None)
    del body["callBackUrl"]
    r = requests.post(
        f"{sb.url}/api/v1/generate/replace-section", json=body, headers=_auth(sb), timeout=5
    )
    assert shape(r.json()) == shape(load("sunoapi.org/replace-section.reply.json"))
    gen = {**load("sunoapi.org/generate.request.json"), "callBackUrl": "https://cb.invalid/x"}
    r = requests.post(f"{sb.url}/api/v1/generate", json=gen, headers=_auth(sb), timeout=5)
    assert shape(r.json()) == shape(load("sunoapi.org/generate.reply.json"))
    r = requests.get(f"{sb.url}/api/v1/generate/credit", headers=_auth(sb), timeout=5)
    assert shape(r.json()) == shape(load("sunoapi.org/credits.reply.json"))
    r = requests.get(
        f"{sb.url}/api/v1/generate/record-info",
        params={"taskId": song.task_id},
        headers=_auth(sb),
        timeout=5,
    )
    assert shape(r.json()) == shape(load("sunoapi.org/record-info.reply.json"))
    # Refusals use the same envelope as the documented errors.
    del body["fullLyrics"]
    r = requests.post(
        f"{sb.url}/api/v1/generate/replace-section", json=body, headers=_auth(sb), timeout=5
    )
    assert r.json()["code"] == 422 and "fullLyrics" in r.json()["msg"]
    assert shape(r.json()) == shape(load("sunoapi.org/replace-section.errors.json")["422"])


def test_kie_ai_sandbox_credit_reply_shape():
    with Sandbox(provider="kie.ai") as sb:
        r = requests.get(f"{sb.url}/api/v1/chat/credit", headers=_auth(sb), timeout=5)
        assert shape(r.json()) == shape(load("kie.ai/credits.reply.json"))


class _Catcher:
    """Collect callbacks the sandbox sends, via a second sandbox-free loopback server."""

    def __init__(self) -> None:
        self.srv = RecordingServer().start()
        self.srv.reply("POST", "/hook", 200, {"code": 200, "msg": "success"})
        self.url = f"{self.srv.url}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [r.json for r in self.srv.requests]


def test_sandbox_generate_callbacks_have_the_documented_stage_shapes(sb):
    catcher = _Catcher()
    try:
        gen = {**load("sunoapi.org/generate.request.json"), "callBackUrl": catcher.url}
        r = requests.post(f"{sb.url}/api/v1/generate", json=gen, headers=_auth(sb), timeout=5)
        assert r.json()["code"] == 200
        assert sb.wait_idle(30)
        by_stage = {b["data"]["callbackType"]: b for b in catcher.bodies()}
        assert list(by_stage) == ["text", "first", "complete"]
        for stage in by_stage:
            documented = load(f"sunoapi.org/callback.generate.{stage}.json")
            assert shape(by_stage[stage]) == shape(documented), stage
            assert by_stage[stage]["msg"] == documented["msg"], stage
    finally:
        catcher.srv.stop()


@pytest.mark.parametrize(
    ("name", "form"),
    [
        ("callback.replace-section.complete.json", None),
        ("callback.replace-section.error.json", "error"),
        ("callback.replace-section.error-null.json", "null"),
    ],
)
def test_sandbox_replace_section_callbacks_have_the_seed_shapes(sb, name, form):
    from suno_nb.sandbox import Faults

    catcher = _Catcher()
    try:
        song = sb.create_song(duration=60)
        if form:
            sb.inject(Faults(error_code=501, error_form=form))
        body = load("sunoapi.org/replace-section.request.json")
        body.update(taskId=song.task_id, audioId=song.audio_id, callBackUrl=catcher.url)
        r = requests.post(
            f"{sb.url}/api/v1/generate/replace-section", json=body, headers=_auth(sb), timeout=5
        )
        assert r.json()["code"] == 200
        assert sb.wait_idle(30)
        [sent] = catcher.bodies()
        assert shape(sent) == shape(load(f"sunoapi.org/{name}"))
    finally:
        catcher.srv.stop()


def test_record_info_of_a_parsed_sandbox_task(sb):
    song = sb.create_song(duration=60)
    info = parse_record_info(sb.record_info(song.task_id))
    assert info.done and len(info.tracks) == 2
