"""The contract as published today (issue 22 part A): V6 models (current, deprecated,
default) and the new replace-section fields, per provider (kie.ai's task API:
test_contract_kie_tasks.py).

Requests go to a recording server or the sandbox on 127.0.0.1; nothing leaves loopback.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import requests

from suno_nb import Sandbox
from suno_nb.client import SunoClient
from suno_nb.contract import PROVIDERS, get_provider
from suno_nb.errors import SectionValidationError, SunoNbWarning
from tests.test_client import KEY, REPLACE, RecordingServer, args, ok

TASK = "/api/v1/jobs/createTask"
RECORD_INFO = "/api/v1/jobs/recordInfo"

# Each new field: a valid value, how sunoapi.org spells it, how kie.ai's input spells it.
FIELDS = {
    "lyrics": ("[Chorus] new words for the section", "lyrics", "lyrics"),
    "vocal_gender": ("f", "vocalGender", "vocal_gender"),
    "style_weight": (0.65, "styleWeight", "style_weight"),
    "weirdness_constraint": (0.3, "weirdnessConstraint", "weirdness_constraint"),
    "audio_weight": (1, "audioWeight", "audio_weight"),
    "variety": (4, "variety", "variety"),
    "persona_id": ("persona_123", "personaId", "persona_id"),
    "persona_model": ("voice_persona", "personaModel", "persona_model"),
}

# Each new field: values refused before any request, and a word the message must carry.
BAD = [
    ("lyrics", "x" * 5001, "5000"),
    ("lyrics", 7, "string"),
    ("vocal_gender", "male", "'m', 'f'"),
    ("style_weight", 1.01, "0 to 1"),
    ("style_weight", -0.01, "0 to 1"),
    ("style_weight", 0.655, "2 decimals"),
    ("weirdness_constraint", float("nan"), "0 to 1"),
    ("weirdness_constraint", "0.5", "0 to 1"),
    ("audio_weight", True, "0 to 1"),
    ("audio_weight", 0.123, "2 decimals"),
    ("variety", 5, "integer from 0 to 4"),
    ("variety", -1, "integer from 0 to 4"),
    ("variety", 1.5, "integer"),
    ("persona_id", "  ", "string"),
    ("persona_model", "style", "'style_persona', 'voice_persona'"),
]


@pytest.fixture
def server():
    srv = RecordingServer().start()
    yield srv
    srv.stop()


def task_args(**over: Any) -> dict[str, Any]:
    """Arguments for kie.ai: a 10 s section (inside its 6-60 s) of a 120 s original."""
    return args(infill_start_s=30.0, infill_end_s=40.0, **over)


# --- models -------------------------------------------------------------------------------------


def test_each_provider_lists_v6_current_and_the_old_models_deprecated():
    for p in PROVIDERS.values():
        assert p.current_models == ("V6", "V6_WILD", "V6_MINI"), p.name
        assert p.default_model == "V6" and p.models[-1] == "V6"
        assert set(p.deprecated_models) == {"V5_5", "V5", "V4_5PLUS", "V4_5ALL", "V4_5", "V4"}
        assert p.sources["models"].startswith("https://")


@pytest.mark.parametrize("model", ["V6", "V6_WILD", "V6_MINI"])
def test_v6_models_are_accepted_in_upload_mode_without_a_warning(server, model):
    server.reply("POST", REPLACE, 200, ok({"taskId": "up-6"}))
    c = SunoClient(KEY, base_url=server.url)
    over = dict(task_id=None, audio_id=None, upload_url="https://cdn.test/a.mp3", model=model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all
        job = c.replace_section(**args(**over))
    assert job.model == model and server.requests[0].json["model"] == model


def test_a_deprecated_model_is_sent_with_a_warning_naming_the_default(server):
    server.reply("POST", REPLACE, 200, ok({"taskId": "up-5"}))
    c = SunoClient(KEY, base_url=server.url)
    over = dict(task_id=None, audio_id=None, upload_url="https://cdn.test/a.mp3", model="V4_5")
    with pytest.warns(SunoNbWarning, match=r"'V4_5' is deprecated.*default is 'V6'") as seen:
        c.replace_section(**args(**over))
    assert seen[0].filename == __file__  # points at the caller's line
    assert server.requests[0].json["model"] == "V4_5"


def test_an_unknown_model_is_refused_naming_the_allowed_ones(server):
    c = SunoClient(KEY, base_url=server.url)
    over = dict(task_id=None, audio_id=None, upload_url="https://cdn.test/a.mp3", model="V7")
    with pytest.raises(SectionValidationError) as info:
        c.replace_section(**args(**over))
    assert info.value.field == "model" and "V6, V6_WILD, V6_MINI" in str(info.value)
    with pytest.raises(SectionValidationError, match="V6_WILD"):
        c.generate(prompt="a song", model="chirp-v6")
    assert server.requests == []


def test_generate_defaults_to_the_current_default_model(server):
    server.reply("POST", "/api/v1/generate", 200, ok({"taskId": "g-1"}))
    c = SunoClient(KEY, base_url=server.url)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        job = c.generate(prompt="a calm harbour song", callback_url="https://cb.test/x")
    assert job.model == "V6" and server.requests[0].json["model"] == "V6"


# --- the new fields -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(FIELDS))
def test_each_new_field_is_sent_camelcase_to_sunoapi_org(server, name):
    value, camel, _ = FIELDS[name]
    server.reply("POST", REPLACE, 200, ok({"taskId": "t-1"}))
    SunoClient(KEY, base_url=server.url).replace_section(**args(**{name: value}))
    body = server.requests[0].json
    assert body[camel] == value
    assert not set(body) & {c for n, (_, c, _) in FIELDS.items() if n != name}


@pytest.mark.parametrize("name", list(FIELDS))
def test_each_new_field_is_sent_snake_case_to_kie_ai(server, name):
    value, _, snake = FIELDS[name]
    server.reply("POST", TASK, 200, ok({"taskId": "k-1"}))
    SunoClient(KEY, base_url=server.url, provider="kie.ai").replace_section(
        **task_args(**{name: value})
    )
    body = server.requests[0].json
    assert body["input"][snake] == value
    assert not set(body["input"]) & {s for n, (_, _, s) in FIELDS.items() if n != name}


def test_all_fields_together_and_none_when_not_given(server):
    server.reply("POST", REPLACE, 200, ok({"taskId": "t-2"}))
    c = SunoClient(KEY, base_url=server.url)
    c.replace_section(**args())
    c.replace_section(**args(**{n: v for n, (v, _, _) in FIELDS.items()}))
    plain, full = (r.json for r in server.requests)
    assert not set(plain) & {camel for _, camel, _ in FIELDS.values()}
    assert {camel: full[camel] for _, camel, _ in FIELDS.values()} == {
        camel: v for v, camel, _ in FIELDS.values()
    }


@pytest.mark.parametrize("provider", ["sunoapi.org", "kie.ai"])
@pytest.mark.parametrize(("name", "value", "word"), BAD)
def test_a_bad_value_is_refused_before_any_request(server, provider, name, value, word):
    c = SunoClient(KEY, base_url=server.url, provider=provider)
    with pytest.raises(SectionValidationError) as info:
        c.replace_section(**task_args(**{name: value}))
    api = get_provider(provider).fields[name].api
    assert info.value.field == name
    text = str(info.value)
    assert name in text and f"request field {api}" in text and word in text, text
    assert server.requests == []  # the recording server saw nothing


def test_field_specs_carry_ranges_decimals_and_sources():
    for p in PROVIDERS.values():
        f = p.fields
        for w in ("style_weight", "weirdness_constraint", "audio_weight"):
            assert (f[w].minimum, f[w].maximum, f[w].decimals) == (0, 1, 2)
        assert (f["variety"].kind, f["variety"].minimum, f["variety"].maximum) == ("int", 0, 4)
        assert f["variety"].default == 1 and f["persona_model"].default == "style_persona"
        assert f["lyrics"].max_chars == 5000
        assert all(s.source.startswith("https://") for s in f.values())
    assert get_provider().fields["style_weight"].api == "styleWeight"
    assert get_provider("kie.ai").fields["style_weight"].api == "style_weight"


# --- the sandbox ------------------------------------------------------------------------------


def _auth(sb: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sb.api_key}"}


def _post(sb: Sandbox, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = requests.post(f"{sb.url}{path}", json=body, headers=_auth(sb), timeout=30)
    assert r.status_code == 200  # the outcome is in the JSON code
    out: dict[str, Any] = r.json()
    return out


def test_sunoapi_sandbox_accepts_v6_and_the_new_fields_and_refuses_bad_ones():
    with Sandbox(delay=0.2) as sb:
        song = sb.create_song(duration=60)
        body = {
            "uploadUrl": f"{sb.url}/files/{song.audio_id}.mp3",
            "model": "V6_MINI",
            "prompt": "p",
            "tags": "t",
            "title": "T",
            "infillStartS": 10.0,
            "infillEndS": 20.0,
            "fullLyrics": "[Verse] x",
        }
        news = {c: v for v, c, _ in FIELDS.values()}
        assert _post(sb, REPLACE, {**body, **news})["code"] == 200
        assert _post(sb, REPLACE, {**body, "model": "V4_5"})["code"] == 200  # deprecated
        for bad in ({"model": "V7"}, {"styleWeight": 0.555}, {"variety": 2.5}):
            reply = _post(sb, REPLACE, {**body, **bad})
            assert reply["code"] == 422 and next(iter(bad)) in reply["msg"], reply
