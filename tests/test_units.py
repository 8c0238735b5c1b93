"""Pure pieces: payload parsing, code table, section rules, signing, store mechanics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suno_nb import payloads, rules, signing
from suno_nb.contract import get_provider
from suno_nb.errors import PayloadError, SectionValidationError, SignatureError

from .conftest import seed_bytes

# --- payloads ---------------------------------------------------------------------------------


def test_seed_bodies_parse():
    ok = payloads.parse_callback(seed_bytes("seed_success.json"))
    assert ok.succeeded and ok.task_id == "2fac****9f72" and len(ok.tracks) == 1
    t = ok.tracks[0]
    assert (t.id, t.duration, t.create_time) == (
        "e231****-****-****-****-****8cadc7dc",
        198.44,
        "2025-01-01 00:00:00",
    )
    err = payloads.parse_callback(seed_bytes("seed_failure_error.json"))
    assert not err.succeeded and err.error == "Generation failed due to technical issues"
    null = payloads.parse_callback(seed_bytes("seed_failure_null.json"))
    assert not null.succeeded and null.tracks == () and null.error is None


def test_code_table_has_the_seeds_codes_in_both_languages():
    table = {row["code"]: row for row in payloads.code_table()}
    assert sorted(table) == [200, 400, 408, 500, 501, 531]
    assert table[531]["meaning"] == "Server error - Generation failed, credits refunded"
    assert "积分已退还" in table[531]["meaning_zh"]
    assert table[200]["success"] and not table[501]["success"]


def test_record_info_camel_case_normalises_to_the_callback_shape():
    data = {
        "taskId": "t1",
        "status": "SUCCESS",
        "param": '{"prompt": "p"}',
        "response": {
            "taskId": "t1",
            "sunoData": [
                {
                    "id": "a",
                    "audioUrl": "https://a.mp3",
                    "streamAudioUrl": "https://s",
                    "imageUrl": "https://i.png",
                    "prompt": "p",
                    "modelName": "chirp-v3-5",
                    "title": "T",
                    "tags": "Jazz",
                    "createTime": "2025-01-01 00:00:00",
                    "duration": 12.5,
                    "newField": 1,
                }
            ],
        },
        "errorCode": None,
        "errorMessage": None,
    }
    info = payloads.parse_record_info(data)
    assert info.done and info.param == {"prompt": "p"}
    cb = payloads.callback_from_record(info)
    t = cb.tracks[0]
    assert (t.audio_url, t.stream_audio_url, t.image_url, t.model_name) == (
        "https://a.mp3",
        "https://s",
        "https://i.png",
        "chirp-v3-5",
    )
    assert t.extra == {"newField": 1}
    assert cb.succeeded and cb.callback_type == "complete"


@pytest.mark.parametrize("status", payloads.FAILED_STATUSES)
def test_failed_record_info_becomes_an_error_callback(status):
    info = payloads.parse_record_info(
        {"taskId": "t", "status": status, "errorCode": 501, "errorMessage": "boom"}
    )
    cb = payloads.callback_from_record(info)
    assert not cb.succeeded and cb.code == 501 and status in cb.error and "boom" in cb.error


@given(st.binary(max_size=200))
def test_parse_callback_only_ever_raises_payload_error(body):
    try:
        payloads.parse_callback(body)
    except PayloadError as exc:
        assert exc.reason


# --- rules ----------------------------------------------------------------------------------


def test_section_rules_round_and_name_field_and_limit():
    s = rules.validate_section(30.004, 45.456, duration=120)
    assert (s.start, s.end, s.length) == (30.0, 45.46, 15.46)
    # the default provider: at least 10 s, no maximum length (70 s of a 200 s song is fine)
    section = get_provider().section
    assert section.min_s == 10.0 and section.max_s is None
    assert get_provider().section.max_s is None
    assert rules.validate_section(0, 70, duration=200).length == 70.0
    kie = get_provider("kie.ai").section  # another provider still states 6-60 s
    cases = [
        ((10, 10), None, None, "infill_end_s", 10.0),
        ((-1, 10), None, None, "infill_start_s", 0),
        ((0, 9.99), None, None, "infill_end_s", 10.0),
        ((0, 5.99), None, kie, "infill_end_s", 6.0),
        ((0, 60.01), None, kie, "infill_end_s", 60.0),
        ((0, 50), 90, None, "infill_end_s", 45.0),
        ((80, 100), 90, None, "infill_end_s", 90.0),
    ]
    for (start, end), duration, section, field, limit in cases:
        with pytest.raises(SectionValidationError) as info:
            rules.validate_section(start, end, duration, section=section)
        assert info.value.field == field and info.value.limit == limit, (start, end)
        assert field in str(info.value)


# --- signing --------------------------------------------------------------------------------


def test_sign_matches_the_reference_formula():
    import base64
    import hashlib
    import hmac

    expected = base64.b64encode(hmac.new(b"k", b"task.1700000000", hashlib.sha256).digest())
    assert signing.sign("k", "task", 1700000000) == expected.decode()
    headers = signing.signature_headers("k", "task", 1700000000)
    assert signing.verify("k", headers, "task", now=1700000100) == 1700000000
    with pytest.raises(SignatureError, match="tolerance"):
        signing.verify("k", headers, "task", now=1700000301)
    for odd in ("soon", "01700000000", "+1700000000", " 1700000000x", "1_700_000_000", "١٧"):
        with pytest.raises(SignatureError, match="digits only, no leading zero"):
            signing.verify("k", {**headers, signing.TIMESTAMP_HEADER: odd}, "task", now=1.7e9)
