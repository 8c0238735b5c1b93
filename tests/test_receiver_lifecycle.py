"""The receive path over real HTTP: signatures, the allow-list, store failures, lifecycle."""

from __future__ import annotations

import socket
import threading
import time

import pytest

import suno_nb.session as session
from suno_nb import SunoNbWarning
from suno_nb.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_headers
from suno_nb.store import Store

from .conftest import post, seed_bytes
from .frontend import shown
from .test_receiver import _body

# --- signatures and the allow-list ----------------------------------------------------------

KEY = "whsec-test-key-0123456789"


@pytest.fixture
def signed_rx(tmp_path):
    receiver = session.start_receiver(tmp_path / "s.sqlite3", tunnel=None, poll=False, hmac_key=KEY)
    yield receiver
    session.stop_receiver()


def test_correct_signature_passes(signed_rx):
    headers = signature_headers(KEY, "2fac****9f72")
    assert post(signed_rx.url, seed_bytes("seed_success.json"), headers).status_code == 200
    assert len(signed_rx.frame()) == 1


def _signature_case(case: str) -> dict[str, str]:
    now = int(time.time())
    if case == "wrong key":
        return signature_headers("not-the-key", "2fac****9f72", now)
    if case == "changed task_id":
        return signature_headers(KEY, "another-task", now)
    if case == "stale timestamp":
        return signature_headers(KEY, "2fac****9f72", now - 301)
    if case == "missing signature":
        return {TIMESTAMP_HEADER: str(now)}
    if case == "missing timestamp":
        return {SIGNATURE_HEADER: signature_headers(KEY, "2fac****9f72", now)[SIGNATURE_HEADER]}
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, reason",
    [
        ("wrong key", "does not match"),
        ("changed task_id", "does not match"),
        ("stale timestamp", "tolerance"),
        ("missing signature", f"missing {SIGNATURE_HEADER}"),
        ("missing timestamp", f"missing {TIMESTAMP_HEADER}"),
    ],
)
def test_bad_signatures_get_401_with_a_distinct_reason(signed_rx, case, reason):
    r = post(signed_rx.url, seed_bytes("seed_success.json"), _signature_case(case))
    assert r.status_code == 401
    assert reason in r.json()["msg"]
    d = signed_rx.deliveries().iloc[0]
    assert d["verdict"] == "rejected" and reason in d["reason"]
    assert signed_rx.frame().empty
    assert KEY not in r.text and KEY not in d["reason"]


def test_hmac_key_never_in_repr_or_frames(signed_rx):
    post(signed_rx.url, seed_bytes("seed_success.json"), signature_headers(KEY, "2fac****9f72"))
    texts = [
        repr(signed_rx),
        shown(signed_rx)["text/html"],
        repr(signed_rx.config),
        signed_rx.frame().to_string(),
        signed_rx.tasks().to_string(),
        signed_rx.deliveries().to_string(),
    ]
    assert not any(KEY in t for t in texts)


def test_allow_list_rejects_other_addresses(tmp_path):
    rx = session.start_receiver(
        tmp_path / "a.sqlite3", tunnel=None, poll=False, allow_ips=["203.0.113.0/24"]
    )
    r = post(rx.url, seed_bytes("seed_success.json"))
    assert r.status_code == 403 and "allow-list" in r.json()["msg"]
    with pytest.warns(SunoNbWarning, match="allow_ips"):  # a new receiver, and it says so
        rx2 = session.start_receiver(
            tmp_path / "a.sqlite3", tunnel=None, poll=False, allow_ips=["127.0.0.1"]
        )
    assert rx2 is not rx and not rx.running
    assert post(rx2.url, seed_bytes("seed_success.json")).status_code == 200


# --- durability -----------------------------------------------------------------------------


def test_failed_store_write_answers_5xx_and_nothing_acknowledged_is_lost(tmp_path):
    path = tmp_path / "d.sqlite3"
    rx = session.start_receiver(path, tunnel=None, poll=False)
    acked = []
    for n in range(5):
        r = post(rx.url, _body(n))
        assert r.status_code == 200
        acked.append(f"task{n:04d}")
    # The disk "fills up": every insert into tracks now fails inside SQLite.
    rx.store.write(
        lambda c: c.execute(
            "CREATE TRIGGER full BEFORE INSERT ON tracks "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    )
    r = post(rx.url, _body(99))
    assert r.status_code == 503
    assert "retry" in r.json()["msg"]
    rx.store.write(lambda c: c.execute("DROP TRIGGER full"))
    assert post(rx.url, _body(99)).status_code == 200  # the sender's retry lands
    acked.append("task0099")
    session.stop_receiver()
    reopened = Store(path)
    try:
        stored = {r["task_id"] for r in reopened.query("SELECT DISTINCT task_id FROM tracks")}
        assert stored == set(acked)
        assert reopened.query("SELECT count(*) AS n FROM tracks")[0]["n"] == 2 * len(acked)
    finally:
        reopened.close()


def test_reopening_the_store_file_shows_earlier_results(tmp_path):
    path = tmp_path / "k.sqlite3"
    rx = session.start_receiver(path, tunnel=None, poll=False)
    post(rx.url, seed_bytes("seed_success.json"))
    url = rx.url
    session.stop_receiver()
    rx2 = session.start_receiver(path, tunnel=None, poll=False)  # "kernel restart"
    assert len(rx2.frame()) == 1
    assert rx2.url.rsplit("/", 1)[1] == url.rsplit("/", 1)[1]  # same callback token


# --- lifecycle ------------------------------------------------------------------------------


def test_rerun_reuses_the_receiver_and_stop_frees_the_port(tmp_path):
    path = tmp_path / "r.sqlite3"
    before = {t.name for t in threading.enumerate()}
    rx = session.start_receiver(path, tunnel=None, poll=False)
    again = session.start_receiver(path, tunnel=None, poll=False)
    assert again is rx
    servers = [t for t in threading.enumerate() if t.name.startswith("suno_nb-receiver")]
    assert len(servers) == 1
    port, thread = rx.port, rx.server.thread
    session.stop_receiver()
    assert not thread.is_alive() and not rx.running
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the port is free again
    leftover = {t.name for t in threading.enumerate()} - before
    assert not [n for n in leftover if n.startswith("suno_nb")]
    rx.stop()  # idempotent
    session.stop_receiver()


def test_a_rerun_with_other_options_says_it_replaced_the_receiver_and_what_changed(tmp_path):
    import warnings

    from suno_nb import SunoNbWarning

    path = tmp_path / "r.sqlite3"
    rx = session.start_receiver(path, tunnel=None, poll=False, hmac_key="k" * 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same options: reused, nothing said
        assert session.start_receiver(path, tunnel=None, poll=False, hmac_key="k" * 32) is rx
    with pytest.warns(SunoNbWarning, match="options changed") as caught:
        new = session.start_receiver(
            path, tunnel=None, poll=True, poll_interval=5, hmac_key="j" * 32
        )
    message = str(caught[0].message)
    assert new is not rx and not rx.running and new.running
    assert f"port {rx.port} was stopped" in message
    assert "poll: False -> True" in message and "poll_interval: 30.0 -> 5" in message
    assert "hmac_key" in message and "k" * 32 not in message and "j" * 32 not in message
    session.stop_receiver()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing running: a plain start
        session.start_receiver(path, tunnel=None, poll=False)
    session.stop_receiver()


def test_receiver_binds_loopback_only(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        session.start_receiver(tmp_path / "x.sqlite3", host="0.0.0.0", tunnel=None)


def test_handlers_run_after_the_ack_and_a_raising_handler_is_isolated(rx):
    seen, order = [], []
    gate = threading.Event()

    def slow(event):
        gate.wait(30)
        order.append("slow")

    def broken(event):
        raise RuntimeError("handler bug")

    def good(event):
        seen.append((event.task_id, event.state, event.new_track_ids))

    rx.on_callback(slow)
    rx.on_callback(broken)
    rx.on_callback(good)
    assert post(rx.url, seed_bytes("seed_success.json")).status_code == 200
    assert order == []  # the ack came while the slow handler was still waiting
    gate.set()
    assert rx.flush(30)
    assert order == ["slow"]
    assert seen == [("2fac****9f72", "succeeded", ("e231****-****-****-****-****8cadc7dc",))]
    rx.on_callback(good, remove=True)
    post(rx.url, _body(5))
    assert rx.flush(30)
    assert len(seen) == 1


def test_replay_reruns_handlers_without_duplicate_rows(rx):
    events = []
    rx.on_callback(events.append)
    post(rx.url, seed_bytes("seed_success.json"))
    assert rx.flush(30)
    first = int(rx.deliveries().iloc[0]["delivery_id"])
    event = rx.replay(first)
    assert rx.flush(30)
    assert (event.source, event.verdict, event.state) == ("replay", "duplicate", "succeeded")
    assert [e.source for e in events] == ["callback", "replay"]
    assert len(rx.frame()) == 1
    d = rx.deliveries()
    assert list(d["source"]) == ["callback", "replay"]
    assert d.iloc[1]["replay_of"] == first


@pytest.mark.parametrize("name", ["poll_interval", "poll_timeout", "tunnel_timeout"])
def test_a_non_positive_time_option_is_refused_by_name_and_starts_nothing(tmp_path, name):
    with pytest.raises(ValueError, match=f"{name} must be > 0 s, got 0"):
        session.start_receiver(tmp_path / "x.sqlite3", tunnel=None, **{name: 0})
    assert session.current_receiver() is None
    assert not (tmp_path / "x.sqlite3").exists()
