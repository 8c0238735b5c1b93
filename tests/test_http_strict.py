"""The receiver on the strict server: framing on the callback path, edge bodies, the fuzz."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import suno_nb.session as session
from suno_nb.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_headers

from .conftest import post, seed_bytes
from .rawhttp import (
    answers,
    chunked,
    exchange,
    one_answer,
    read_until_close,
    request,
)

KEY = "whsec-strict-test-key-0123456789"
SEED = seed_bytes("seed_success.json")


def _target(rx) -> str:
    return rx.local_url.split(str(rx.port), 1)[1]


def _rows(rx) -> list[dict]:
    assert rx.flush(30)  # the server's own rejections are committed after their answer
    return rx.store.query("SELECT * FROM deliveries ORDER BY id")


@pytest.fixture
def srx(tmp_path):
    receiver = session.start_receiver(
        tmp_path / "strict.sqlite3", tunnel=None, poll=False, request_timeout=1.0
    )
    yield receiver
    session.stop_receiver()


def test_chunked_callback_is_stored(srx):
    status, doc = one_answer(exchange(srx.port, chunked("POST", _target(srx), SEED)))
    assert (status, doc) == (200, {"code": 200, "msg": "success"})
    assert len(srx.frame()) == 1


@pytest.mark.parametrize(
    "name",
    ["gzip-chunked", "cl-and-te", "two-lengths", "plus-length", "underscore-length", "bare-cr"],
)
def test_bad_framing_on_the_callback_path_is_4xx_with_a_row(srx, name):
    target = _target(srx)
    data = {
        "gzip-chunked": chunked("POST", target, SEED, te="gzip, chunked"),
        "cl-and-te": chunked("POST", target, SEED, extra=f"Content-Length: {len(SEED)}\r\n"),
        "two-lengths": request("POST", target, SEED).replace(
            b"Content-Length:", b"Content-Length: 5\r\nContent-Length:"
        ),
        "plus-length": request("POST", target, SEED, {"Content-Length": f"+{len(SEED)}"}),
        "underscore-length": request(
            "POST", target, SEED, {"Content-Length": f"{len(SEED)}_0"[: len(str(len(SEED)))]}
        ).replace(b"Content-Length: ", b"Content-Length: 1_"),
        "bare-cr": request("POST", target, SEED, {"X-Odd": "a\rb"}),
    }[name]
    status, doc = one_answer(exchange(srx.port, data))
    assert 400 <= status < 500, doc
    rows = _rows(srx)
    assert [(r["verdict"], r["status"]) for r in rows] == [("rejected", status)]
    assert rows[0]["path"] in (None, "/callback/…")
    assert srx.frame().empty


def test_content_length_with_chunked_is_one_400_and_nothing_smuggled(srx):
    target = _target(srx)
    smuggled = request("POST", target, SEED)  # a whole valid callback hidden in the body
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    data = (
        f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode() + body
    got = answers(exchange(srx.port, data))
    assert [g[0] for g in got] == [400]
    assert srx.frame().empty and srx.tasks().empty
    assert [r["status"] for r in _rows(srx)] == [400]


def test_head_and_wrong_methods(srx):
    raw = exchange(srx.port, request("HEAD", _target(srx)))
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405") and body == b""
    status, _doc = one_answer(exchange(srx.port, request("DELETE", _target(srx))))
    assert status == 405
    assert [r["status"] for r in _rows(srx)] == [405, 405]


def test_every_error_answer_is_json(srx):
    target = _target(srx)
    cases = [
        request("POST", "/nope", SEED),
        request("GET", target),
        request("POST", target, b"x" * (1024 * 1024 + 1)),
        request("POST", target, SEED, {"Content-Type": "text/plain"}),
        request("POST", target, b"{"),
        request("POST", target, SEED, {"X-Big": "a" * 20000}),
        b"POST " + b"/a" * 10000 + b" HTTP/1.1\r\n\r\n",
        b"POST / HTTP/3.0\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ]
    statuses = [one_answer(exchange(srx.port, data))[0] for data in cases]
    assert statuses == [404, 405, 413, 415, 400, 431, 431, 400, 400]
    assert sorted(r["status"] for r in _rows(srx)) == sorted(statuses)


EDGE_BODIES = {
    "lone surrogate": SEED.replace(b'"msg": "', b'"msg": "\\ud800', 1),
    "code 2**63": SEED.replace(b'"code": 200', b'"code": 9223372036854775808', 1),
    "5000-digit integer": SEED.replace(b'"code": 200', b'"code": ' + b"9" * 5000, 1),
    "duration 1e400": SEED.replace(b'"duration": ', b'"duration": 1e400, "x": ', 1),
    "NaN": SEED.replace(b'"code": 200', b'"code": NaN', 1),
    "Infinity": SEED.replace(b'"code": 200', b'"code": -Infinity', 1),
    "deep nesting": b'{"code": 200, "msg": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "surrogate task_id": SEED.replace(b'"task_id": "', b'"task_id": "\\udfff', 1),
}


@pytest.mark.parametrize("name", list(EDGE_BODIES))
def test_named_edge_bodies_are_400_with_a_row(srx, name):
    body = EDGE_BODIES[name]
    assert body != SEED
    r = post(srx.url, body)
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["code"] == 400 and r.json()["msg"]
    assert [(x["status"], x["verdict"]) for x in _rows(srx)] == [(400, "rejected")]


def test_surrogate_task_id_with_a_key_set_is_answered(tmp_path):
    rx = session.start_receiver(tmp_path / "k.sqlite3", tunnel=None, poll=False, hmac_key=KEY)
    body = EDGE_BODIES["surrogate task_id"]
    r = post(rx.url, body, signature_headers(KEY, "x"))
    assert r.status_code in (400, 401)
    assert len(_rows(rx)) == 1


# --- the fuzz: random bytes and structured JSON ------------------------------------------------

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "\udfff", "complete", "error", "text", "first"])
)
json_values = st.recursive(
    json_leaf,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=16,
)
callback_like = st.fixed_dictionaries(
    {
        "code": st.one_of(st.just(200), json_leaf),
        "msg": json_values,
        "data": st.fixed_dictionaries(
            {
                "callbackType": st.one_of(
                    st.sampled_from(["complete", "error", "first"]), json_leaf
                ),
                "task_id": st.one_of(st.text(min_size=1, max_size=16), json_leaf),
                "data": st.one_of(
                    st.lists(
                        st.fixed_dictionaries(
                            {"id": st.text(min_size=1, max_size=8), "duration": json_leaf}
                        ),
                        max_size=3,
                    ),
                    json_values,
                ),
            }
        ),
    }
)


def _dump(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@pytest.mark.slow
@pytest.mark.alone  # 1,200 requests, many on new connections
def test_fuzz_only_200_or_4xx_every_request_answered_every_rejection_a_row(tmp_path):
    rx = session.start_receiver(
        tmp_path / "fuzz.sqlite3", tunnel=None, poll=False, hmac_key=KEY, request_timeout=1.0
    )
    sender = requests.Session()
    seen = {"ok": 0, "rejected": 0}
    now = int(time.time())

    @settings(
        max_examples=1200,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(
        body=st.one_of(st.binary(max_size=400), json_values.map(_dump), callback_like.map(_dump)),
        ts=st.one_of(
            st.just(str(now)),
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=8),
            st.integers().map(str),
        ),
        sign_task=st.one_of(st.none(), st.text(max_size=8)),
    )
    def one(body: bytes, ts: str, sign_task: str | None) -> None:
        try:
            task = json.loads(body)["data"]["task_id"]
        except Exception:
            task = None
        headers = {TIMESTAMP_HEADER: ts}
        if isinstance(task, str) and sign_task is None:
            with contextlib.suppress(UnicodeEncodeError):
                headers.update(signature_headers(KEY, task, now))
        elif sign_task is not None:
            headers[SIGNATURE_HEADER] = signature_headers(KEY, sign_task, now)[SIGNATURE_HEADER]
        r = post(rx.url, body, headers, sender)
        assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)
        doc = r.json()
        assert doc["code"] == r.status_code and isinstance(doc["msg"], str)
        seen["ok" if r.status_code == 200 else "rejected"] += 1

    one()
    total = seen["ok"] + seen["rejected"]
    assert total >= 1000
    counts = rx.store.query(
        "SELECT sum(verdict = 'rejected') AS rejected, count(*) AS n FROM deliveries"
    )[0]
    assert counts["rejected"] == seen["rejected"]  # every rejection has its row
    assert counts["n"] == total  # and every accepted one (duplicates included)


def test_random_raw_bytes_are_always_answered(srx):
    answered = []

    @settings(max_examples=150, deadline=None, database=None)
    @given(st.binary(min_size=1, max_size=200))
    def one(data: bytes) -> None:
        raw = exchange(srx.port, data + b"\r\n\r\n", timeout=10)
        status, _doc = one_answer(raw)
        assert 400 <= status < 500 or status == 405
        answered.append(status)

    one()
    assert len(answered) >= 150
    assert srx.flush(30)
    assert len(_rows(srx)) >= len([s for s in answered if s != 408])


def test_wrong_path_answers_survive_large_bodies(srx):
    big = b"x" * (900 * 1024)
    with requests.Session() as s:
        r = s.post(srx.url + "nope", data=big, timeout=10)
        assert r.status_code == 404  # not reset by the body the app never read
        assert post(srx.url, SEED, session_=s).status_code == 200  # same connection, still fine
    # Chunked, so the length is unknown until the body is read.
    huge = chunked("POST", _target(srx) + "x", b"y" * (3 * 1024 * 1024))
    with socket.create_connection(("127.0.0.1", srx.port), timeout=10) as conn:
        with contextlib.suppress(OSError):
            conn.sendall(huge)
        got = b""
        with contextlib.suppress(OSError):
            got = read_until_close(conn)
    assert [a[0] for a in answers(got)] == [413]  # one answer, read before the reset
    assert [r["status"] for r in _rows(srx)] == [404, 200, 413]
