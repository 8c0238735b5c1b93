"""Payload hardening: bad bytes only ever raise PayloadError with a clear reason, quickly."""

from __future__ import annotations

import json
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suno_nb import payloads
from suno_nb.errors import PayloadError


def _body(**data) -> bytes:
    return json.dumps(
        {"code": 200, "msg": "ok", "data": {"callbackType": "complete", "task_id": "t", **data}}
    ).encode()


NO_HANG = 30.0  # seconds: a parse that must end rather than hang (speed: benchmarks/)

# The named edge cases of issue 11: each is refused with a reason naming what is wrong.
EDGE_CASES = {
    "lone high surrogate": (b'{"code": 200, "msg": "\\ud800", "data": {}}', "surrogate"),
    "lone low surrogate in a key": (b'{"\\udc00": 1}', "surrogate"),
    "lone surrogate task_id": (
        b'{"code":200,"msg":"m","data":{"callbackType":"complete","task_id":"\\udbff"}}',
        "surrogate",
    ),
    "code beyond 2**63": (b'{"code": 9223372036854775808}', "out of range"),
    "code below -2**63": (b'{"code": -9223372036854775809}', "out of range"),
    "5000-digit integer": (b'{"code": ' + b"7" * 5000 + b"}", "out of range"),
    "100000-digit integer": (b"9" * 100_000, "out of range"),
    "duration 1e400": (b'{"duration": 1e400}', "overflows a float"),
    "duration -1e400": (b'{"duration": -1e400}', "overflows a float"),
    "NaN": (b'{"duration": NaN}', "NaN and Infinity"),
    "Infinity": (b'{"duration": Infinity}', "NaN and Infinity"),
    "-Infinity": (b"[-Infinity]", "NaN and Infinity"),
    "33 levels": (b"[" * 33 + b"]" * 33, "nested deeper than 32"),
    "100000 levels, unclosed": (b"[" * 100_000, "nested deeper than 32"),
    "deep objects": (b'{"a":' * 40 + b"1" + b"}" * 40, "nested deeper than 32"),
    "not UTF-8": (b'{"msg": "\xff"}', "not valid UTF-8"),
    "truncated": (b'{"code": 2', "not JSON"),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_named_edge_cases_are_payload_errors_with_a_reason(case):
    body, fragment = EDGE_CASES[case]
    start = time.perf_counter()
    with pytest.raises(PayloadError) as info:
        payloads.parse_callback(body)
    assert fragment in info.value.reason
    assert time.perf_counter() - start < NO_HANG  # anti-hang guard, not a speed check


def test_what_is_still_fine_passes():
    assert payloads.decode_json(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}  # a pair
    limits = payloads.decode_json(b"[9223372036854775807, -9223372036854775808, 1e308, 1e-400]")
    assert limits == [2**63 - 1, -(2**63), 1e308, 0.0]
    assert payloads.decode_json(b"[" * 32 + b"]" * 32) is not None
    cb = payloads.parse_callback(_body(data=[{"id": "a", "duration": 198.44}]))
    assert cb.tracks[0].duration == 198.44


def test_reasons_are_bounded_and_name_the_place():
    with pytest.raises(PayloadError) as info:
        payloads.decode_json(b'{"data": {"items": ["ok", "\\ud800"]}}')
    assert "body.data.items[1]" in info.value.reason
    with pytest.raises(PayloadError) as info:
        payloads.decode_json(b"1" * 50_000)
    assert len(info.value.reason) < 200


_SURROGATES = st.integers(0xD800, 0xDFFF).map(lambda c: f"@@{c:04x}@@")
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    _SURROGATES,
)
_JSON = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


def _encode(doc) -> bytes:
    """JSON text that may hold NaN/Infinity, huge ints and raw lone-surrogate escapes."""
    text = json.dumps(doc, allow_nan=True)
    return re.sub(r"@@([0-9a-f]{4})@@", r"\\u\1", text).encode()  # a lone-surrogate escape


def _check(body: bytes) -> None:
    try:
        cb = payloads.parse_callback(body)
    except PayloadError as exc:
        assert exc.reason and len(exc.reason) < 1000
        return
    # Whatever passes can be stored faithfully: UTF-8, no NaN, 64-bit ints.
    json.dumps(cb.raw, allow_nan=False).encode("utf-8")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_only_ever_raise_payload_error(body):
    _check(body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_JSON)
def test_random_json_only_ever_raises_payload_error(doc):
    _check(_encode(doc))
    _check(_encode({"code": 200, "msg": "m", "data": doc}))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stage=st.text(max_size=40),
    task=st.one_of(st.text(max_size=8), st.integers(), st.none()),
    key=st.sampled_from(["task_id", "taskId"]),
    items=st.lists(st.dictionaries(st.sampled_from(["id", "duration", "x"]), _LEAVES)),
)
def test_structured_callbacks_only_ever_raise_payload_error(stage, task, key, items):
    doc = {"code": 200, "msg": "m", "data": {"callbackType": stage, key: task, "data": items}}
    _check(_encode(doc))


def _deep(doc, levels: int):
    for _ in range(levels):
        doc = [doc] if levels % 2 else {"k": doc}
    return doc


def _decided(decode, body: bytes):
    try:
        return ("ok", decode(body))
    except PayloadError as exc:
        return ("refused", exc.reason)


def _walk_always(body: bytes):
    """The reference, written out here: decode, then walk every value (what decode_json
    skips when the text cannot hold what the walk looks for) and refuse nesting deeper than
    32 levels and strings or keys holding a lone surrogate."""
    doc = payloads.decode_json(body)  # raises what the decoder itself refuses
    found = set()
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
                found.add("lone UTF-16 surrogate")
        elif isinstance(value, (dict, list)):
            if depth > 32:
                found.add("nested deeper than 32")
                continue
            for key in value if isinstance(value, dict) else ():
                if any(0xD800 <= ord(c) <= 0xDFFF for c in key):
                    found.add("lone UTF-16 surrogate")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    if found:
        raise PayloadError(" / ".join(sorted(found)))  # what the reasons must name
    return doc


def _agree(ours, reference) -> bool:
    """Both accept the same document, or both refuse: for the same reason when the
    decoder itself refused, else for a reason the reference walk found."""
    if ours[0] != reference[0]:
        return False
    if ours[0] == "ok" or ours[1] == reference[1]:
        return ours[1] == reference[1]
    return any(problem in ours[1] for problem in reference[1].split(" / "))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_JSON, levels=st.integers(0, 40), upper=st.booleans())
def test_the_fast_path_decides_exactly_like_the_full_walk(doc, levels, upper):
    body = _encode(_deep(doc, levels))
    if upper:  # escapes are case-insensitive: \uD800 is the same surrogate as \ud800
        body = re.sub(rb"\\u([0-9a-f]{4})", lambda m: b"\\u" + m.group(1).upper(), body)
    ours = _decided(payloads.decode_json, body)
    reference = _decided(_walk_always, body)
    assert _agree(ours, reference), (ours, reference)


def test_the_fast_path_still_catches_the_named_cases():
    nested = b"[" * 33 + b"]" * 33
    with pytest.raises(PayloadError, match="deeper than 32"):
        payloads.decode_json(nested)
    for escape in (b"\\ud800", b"\\uDBFF", b"\\udc00", b"\\uDFFF"):
        with pytest.raises(PayloadError, match="surrogate"):
            payloads.decode_json(b'{"a": "x' + escape + b'y"}')
    # A valid pair and an escaped backslash before "ud800" are fine.
    assert payloads.decode_json(b'["\\ud83d\\ude00"]') == ["\U0001f600"]
    assert payloads.decode_json(b'["\\\\ud800"]') == ["\\ud800"]
