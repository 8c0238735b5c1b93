"""The receiver on the strict server: stop/re-run, a vanished store, signatures, secrets."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import socket

import pytest
import requests

import suno_nb.session as session
from suno_nb import SunoNbWarning
from suno_nb.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_headers

from .conftest import post, seed_bytes
from .rawhttp import (
    chunked,
    exchange,
    one_answer,
    read_answer,
    read_until_close,
    request,
)
from .test_http_strict import KEY, SEED, _rows, _target


@pytest.fixture
def srx(tmp_path):
    receiver = session.start_receiver(
        tmp_path / "strict.sqlite3", tunnel=None, poll=False, request_timeout=1.0
    )
    yield receiver
    session.stop_receiver()


# --- keep-alive across stop() and a re-run on the same port -----------------------------------


def test_keepalive_connection_is_closed_by_stop_and_by_a_rerun(tmp_path):
    rx = session.start_receiver(tmp_path / "a.sqlite3", tunnel=None, poll=False)
    port, target = rx.port, _target(rx)
    held = socket.create_connection(("127.0.0.1", port), timeout=10)
    held.sendall(request("POST", target, SEED, close=False))
    assert read_answer(held)[0] == 200
    # A re-run with other arguments on the same port replaces the receiver.
    with pytest.warns(SunoNbWarning, match="store"):  # a new receiver, and it says so
        rx2 = session.start_receiver(tmp_path / "b.sqlite3", tunnel=None, poll=False, port=port)
    assert rx2 is not rx and not rx.running and rx2.port == port
    try:
        held.sendall(request("POST", target, SEED, close=False))
        got = read_until_close(held)
    except ConnectionError:
        got = b""
    assert got == b""  # closed, never answered (no 503 from the old receiver)
    held.close()
    assert post(rx2.url, SEED).status_code == 200  # the new one answers on the same port
    held = socket.create_connection(("127.0.0.1", port), timeout=10)
    held.sendall(request("POST", _target(rx2), SEED, close=False))
    assert read_answer(held)[0] == 200
    session.stop_receiver()
    held.settimeout(5)
    with contextlib.suppress(ConnectionError):
        assert read_until_close(held) == b""
    held.close()


# --- the store going away -----------------------------------------------------------------------


def test_store_directory_removed_means_503_never_200(tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    rx = session.start_receiver(folder / "rx.sqlite3", tunnel=None, poll=False)
    assert post(rx.url, SEED).status_code == 200
    shutil.rmtree(folder)
    statuses = []
    for n in range(20):
        body = SEED.replace(b'"task_id": "', f'"task_id": "gone{n}-'.encode(), 1)
        statuses.append(post(rx.url, body).status_code)
    assert set(statuses) == {503}
    assert "UNAVAILABLE" in repr(rx)


# --- signatures bound to the body ---------------------------------------------------------------


@pytest.fixture
def signed(tmp_path):
    rx = session.start_receiver(tmp_path / "s.sqlite3", tunnel=None, poll=False, hmac_key=KEY)
    yield rx
    session.stop_receiver()


def _task_of(body: bytes) -> str:
    return json.loads(body)["data"]["task_id"]


def test_replayed_signature_with_a_forged_body_is_kept_unconfirmed_and_changes_nothing(signed):
    failure = seed_bytes("seed_failure_error.json")
    task = _task_of(failure)
    headers = signature_headers(KEY, task)
    assert post(signed.url, failure, headers).status_code == 200

    def state() -> list:
        return signed.store.query("SELECT task_id, state, code, callback_type FROM tasks")

    before = (state(), len(signed.frame()), len(_rows(signed)))
    forged = SEED.replace(_task_of(SEED).encode(), task.encode())  # flips it to succeeded
    r = post(signed.url, forged, headers)
    assert r.status_code == 200 and "not applied" in r.json()["msg"]
    assert state() == before[0]  # still failed: the body under a reused signature waits
    assert len(signed.frame()) == before[1] == 0
    rows = _rows(signed)
    assert len(rows) == before[2] + 1 and rows[-1]["verdict"] == "unconfirmed"
    assert signed.store.task(task)["unconfirmed"] == 1
    exact = post(signed.url, failure, headers)  # the same delivery again: a duplicate
    assert exact.status_code == 200
    assert _rows(signed)[-1]["verdict"] == "duplicate"


@pytest.mark.parametrize(
    "ts", ["9" * 400, "1" * 5000, "1e9", "+1700000000", "1_700_000_000", "١٧٠٠٠٠٠٠٠٠", "-5", ""]
)
def test_timestamps_that_are_not_sane_integers_are_401(signed, ts):
    task = _task_of(SEED)
    signature = signature_headers(KEY, task)[SIGNATURE_HEADER]
    data = request("POST", _target(signed), SEED, {SIGNATURE_HEADER: signature})
    stamp = f"\r\n{TIMESTAMP_HEADER}: {ts}\r\n\r\n".encode()  # UTF-8 on the wire
    data = data.replace(b"\r\n\r\n", stamp, 1)
    status, doc = one_answer(exchange(signed.port, data))
    assert status == 401, doc
    assert "Unix time" in doc["msg"]
    assert signed.frame().empty


# --- secrets ------------------------------------------------------------------------------------


def test_debug_logs_never_contain_the_path_token(srx, caplog):
    token = srx.local_url.rsplit("/", 1)[1]
    caplog.set_level(logging.DEBUG)
    target = _target(srx)
    post(srx.url, SEED)
    post(srx.url + "x", SEED)
    post(srx.url[:-1], SEED)
    requests.get(srx.url, timeout=5)
    exchange(srx.port, chunked("POST", target, SEED, te="gzip, chunked"))
    exchange(srx.port, request("POST", target, b"x" * (1024 * 1024 + 10)))
    exchange(srx.port, request("POST", target, SEED, {"X-Big": "a" * 20000}))
    srx.stop()
    ours = ("suno_nb", "uvicorn", "asyncio")  # not the test's own HTTP client
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(ours))
    assert "/callback/" in text  # the requests were logged, masked
    assert token not in text and token[:-1] not in text
    assert not any(token in json.dumps(r) for r in _rows_after_stop(srx))


def _rows_after_stop(rx) -> list[dict]:
    from suno_nb.store import Store

    store = Store(rx.store.path)
    try:
        return store.query("SELECT path, headers, reason FROM deliveries")
    finally:
        store.close()


def test_credential_like_headers_are_not_stored(signed):
    task = _task_of(SEED)
    sent = {
        "Authorization": "Bearer a",
        "Cookie": "s=1",
        "Api-Key": "k",
        "X-Auth-Token": "t",
        "X-Client-Secret": "s",
        "X-Password": "p",
        "Proxy-Authorization": "Basic x",
        "X-Trace": "kept",
        **signature_headers(KEY, task),
    }
    assert post(signed.url, SEED, sent).status_code == 200
    stored = json.loads(_rows(signed)[0]["headers"])
    names = {k.lower() for k in stored}
    assert "x-trace" in names
    assert {"x-webhook-timestamp", "x-webhook-signature"} <= names
    for name in ("authorization", "cookie", "api-key", "x-auth-token", "x-client-secret"):
        assert name not in names
    assert not {"x-password", "proxy-authorization"} & names


def test_config_asdict_and_repr_expose_no_secret(tmp_path):
    rx = session.start_receiver(
        tmp_path / "c.sqlite3", tunnel=None, poll=False, hmac_key=KEY, authtoken="ngrok-tok-123456"
    )
    for text in (repr(rx.config), str(dataclasses.asdict(rx.config)), repr(rx)):
        assert KEY not in text and "ngrok-tok-123456" not in text
    assert rx.config.hmac_key.value == KEY  # still usable as the key


def test_signature_memory_survives_a_restart(tmp_path):
    path = tmp_path / "r.sqlite3"
    rx = session.start_receiver(path, tunnel=None, poll=False, hmac_key=KEY)
    failure = seed_bytes("seed_failure_error.json")
    task = _task_of(failure)
    headers = signature_headers(KEY, task)
    assert post(rx.url, failure, headers).status_code == 200
    session.stop_receiver()
    rx = session.start_receiver(path, tunnel=None, poll=False, hmac_key=KEY)  # a new kernel
    forged = SEED.replace(_task_of(SEED).encode(), task.encode())
    r = post(rx.url, forged, headers)
    assert r.status_code == 200 and "not applied" in r.json()["msg"]
    assert rx.frame().empty and rx.store.task(task)["state"] == "failed"


def test_no_process_wide_settings_change(tmp_path):
    import signal
    import sys

    def snapshot():
        names = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio")
        loggers = [
            (
                logging.getLogger(n).level,
                list(logging.getLogger(n).handlers),
                logging.getLogger(n).propagate,
            )
            for n in names
        ]
        return (
            sys.getswitchinterval(),
            signal.getsignal(signal.SIGINT),
            signal.getsignal(signal.SIGTERM),
            logging.getLevelName(5),
            loggers,
        )

    before = snapshot()
    rx = session.start_receiver(tmp_path / "p.sqlite3", tunnel=None, poll=False)
    post(rx.url, SEED)
    exchange(rx.port, b"garbage\r\n\r\n")
    assert snapshot() == before
    session.stop_receiver()
    assert snapshot() == before
