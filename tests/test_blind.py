"""Blind listening (``audition(rx, blind=True)``): ABX trials and blind ratings, driven through
the widget's model as the page drives it (traits set, the messages ``blind.js`` sends), the
trials stored with their hidden mapping, the per-pair summary with its exact binomial
p-value, blind ratings marked in ``rx.frame()``, and a stopped receiver.

The fast tests land callbacks for a song and a replace task by hand (no audio is rendered);
the slow ones use the Sandbox's audio, and a real browser (JupyterLab + Chromium).
"""

from __future__ import annotations

import io
import json
import random
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import requests

from suno_nb import Sandbox, SunoClient
from suno_nb.frame import abx_p_value, verdict
from suno_nb.rows import Trial
from suno_nb.session import start_receiver, stop_receiver
from suno_nb.store import Submission
from suno_nb.widgets import Audition, BlindTest, audition
from suno_nb.widgets._blind_plan import deal_abx, deal_rating

from .frontend import send_from_page, sent_to_page

WAIT_S = 30.0
ORIGINAL, TAKES = "orig-1", ("take-a", "take-b")
LABELS = ("Original", "Take 1", "Take 2")


def _post(rx, task_id: str, ids: tuple[str, ...], title: str) -> None:
    tracks = [
        {
            "id": i,
            "audio_url": f"http://127.0.0.1:9/{i}.mp3",
            "title": title,
            "tags": "indie pop",
            "createTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "duration": 60.0,
        }
        for i in ids
    ]
    body = {"code": 200, "msg": "All generated successfully.",
            "data": {"callbackType": "complete", "task_id": task_id, "data": tracks}}  # fmt: skip
    with requests.Session() as http:
        http.trust_env = False  # loopback only
        assert http.post(rx.url, json=body, timeout=10).status_code == 200


@pytest.fixture
def brx(tmp_path):
    """A receiver holding a song (``gen-1``: the original) and a replace task (``rep-1``,
    two takes), landed as callbacks; no audio behind the URLs."""
    rx = start_receiver(tmp_path / "blind.sqlite3", tunnel=None, poll=False)
    rx.store.record_submission(Submission("gen-1", title="Harbour Lights"))
    rx.store.record_submission(
        Submission("rep-1", "gen-1", ORIGINAL, 20.0, 32.0, title="Harbour Lights")
    )
    _post(rx, "gen-1", (ORIGINAL,), "Harbour Lights")
    _post(rx, "rep-1", TAKES, "Harbour Lights")
    yield rx
    stop_receiver()


@pytest.fixture
def made():
    widgets: list = []
    yield widgets
    for w in widgets:
        w.close()


def _synced(widget) -> str:
    """What the page holds of the widget now: its synced state, without the module code."""
    state = {k: v for k, v in widget.get_state().items() if k not in ("_esm", "_css")}
    return json.dumps(state, default=str)


def _hidden(widget) -> None:
    state = _synced(widget)
    for secret in (ORIGINAL, *TAKES, *LABELS, "127.0.0.1"):
        assert secret not in state, (secret, state)


# --- ABX ------------------------------------------------------------------------------------


def test_an_abx_session_stores_every_trial_with_its_hidden_mapping(brx, made):
    bt = audition(brx, blind=True, seed=7, trials=10)
    made.append(bt)
    assert isinstance(bt, BlindTest) and repr(bt) == "BlindTest(mode='abx', trials=10)"
    assert bt.phase == "setup" and bt.section == [20.0, 32.0]
    keys = {c["label"]: c["key"] for c in bt.candidates}
    assert list(keys) == list(LABELS)  # the choice of the pair is made by name
    pair = [keys["Take 2"], keys["Original"]]
    bt.pair = pair  # what the page's two selects do
    ids = {keys["Original"]: ORIGINAL, keys["Take 1"]: TAKES[0], keys["Take 2"]: TAKES[1]}
    rng = random.Random(7)  # the seed: every deal is known
    deals = [deal_abx(rng, pair) for _ in range(10)]
    assert len({json.dumps(d) for d in deals}) > 1  # the order is not always the same

    send_from_page(bt, {"type": "start"})
    send_from_page(bt, {"type": "answer", "x": "A", "trial": 2})  # a stale page's click
    assert bt.feedback == "That was for a trial that is over: not saved." and bt.answer == ""
    wrong_at = 4  # one wrong answer: 9 of 10 right
    for i, deal in enumerate(deals, start=1):
        assert (bt.phase, bt.trial, bt.slots) == ("trial", i, ["A", "B", "X"])
        _hidden(bt)  # no label, track id or URL in the page during a trial
        right = "A" if deal["X"] == deal["A"] else "B"
        given = right if i != wrong_at else {"A": "B", "B": "A"}[right]
        send_from_page(bt, {"type": "answer", "x": given, "trial": i})
        assert bt.answer == given and "Answer saved" in bt.feedback
        if i < 10:
            assert bt.phase == "answered" and bt.result == {}  # not revealed unless asked
            _hidden(bt)
            if i == wrong_at:  # the listener asks: this trial only
                send_from_page(bt, {"type": "reveal"})
                assert bt.result == {
                    "trial": i, "A": _label(deal["A"], keys), "B": _label(deal["B"], keys),
                    "x": right, "answer": given, "correct": False,
                }  # fmt: skip
            send_from_page(bt, {"type": "next"})
    # the end of the session reveals every trial
    assert bt.phase == "done" and len(bt.results) == 10 and bt.score.startswith("9 of 10 right")
    assert [r["correct"] for r in bt.results] == [i != wrong_at for i in range(1, 11)]

    trials = brx.listening_tests()
    assert list(trials["trial"]) == list(range(1, 11)) and trials["session_id"].nunique() == 1
    assert set(trials["mode"]) == {"abx"} and set(trials["task_id"]) == {"rep-1"}
    assert set(trials["track_1"]) == {TAKES[1]} and set(trials["track_2"]) == {ORIGINAL}
    for deal, row in zip(deals, trials.itertuples(), strict=True):
        assert (row.a_track, row.b_track, row.x_track) == tuple(ids[deal[s]] for s in "ABX")
        assert row.mapping == {s: ids[deal[s]] for s in "ABX"}
    assert list(trials["correct"]) == [int(i != wrong_at) for i in range(1, 11)]
    assert str(trials["correct"].dtype) == "Int64" and trials["answered_at"].notna().all()

    summary = brx.listening_tests(summary=True)
    assert len(summary) == 1
    row = summary.iloc[0]
    assert (row.track_1, row.track_2, row.correct, row.total) == (TAKES[1], ORIGINAL, 9, 10)
    assert row.p_value == 11 / 1024  # P(X >= 9 | n=10, p=1/2), exactly
    assert "a difference was heard" in row.verdict


def _label(key: str, keys: dict[str, str]) -> str:
    return next(label for label, k in keys.items() if k == key)


def test_the_same_seed_deals_the_same_trials_and_sessions_add_up_per_pair(brx, made):
    def session(answers: str) -> list[dict]:
        bt = audition(brx, blind=True, seed=11, trials=len(answers), pair=("take2", "take1"))
        made.append(bt)
        bt.start()
        for x in answers:
            bt.answer_abx(x)
            bt.next()
        return list(bt.results)

    first, second = session("AAAA"), session("BBBB")
    assert [(r["A"], r["B"], r["x"]) for r in first] == [(r["A"], r["B"], r["x"]) for r in second]
    summary = brx.listening_tests(summary=True)
    assert len(summary) == 1 and summary.iloc[0].total == 8  # one pair, either order
    assert summary.iloc[0].correct == sum(r["correct"] for r in first + second)


def test_binomial_p_values_and_verdicts():
    assert abx_p_value(9, 10) == 11 / 1024
    assert abx_p_value(10, 10) == 1 / 1024
    assert abx_p_value(0, 10) == 1.0
    assert abx_p_value(5, 10) == 638 / 1024
    assert abx_p_value(12, 16) == 2517 / 65536
    assert "too few trials" in verdict(4, 4)  # 1/16: four right could be luck
    assert "a difference was heard" in verdict(5, 5)
    assert "no reliable difference" in verdict(6, 10)
    with pytest.raises(ValueError, match="correct"):
        abx_p_value(11, 10)


# --- blind rating ------------------------------------------------------------------------------


def test_blind_ratings_hide_the_takes_and_are_marked_blind_in_the_frame(brx, made):
    bt = audition(brx, blind=True, mode="rating", seed=3, trials=1)
    made.append(bt)
    order = deal_rating(random.Random(3), ["take1", "take2"])
    ids = {"take1": TAKES[0], "take2": TAKES[1]}
    send_from_page(bt, {"type": "start"})
    assert bt.phase == "trial" and bt.slots == ["1", "2"]
    _hidden(bt)
    send_from_page(bt, {"type": "rate", "slot": "1", "stars": 5})
    assert bt.stars == {"1": 5} and "Saved" in bt.feedback and bt.phase == "trial"
    _hidden(bt)
    send_from_page(bt, {"type": "rate", "slot": "2", "stars": 2})
    assert bt.phase == "done" and "Ratings saved" in bt.feedback
    frame = brx.frame().set_index("track_id")
    assert frame.loc[ids[order["1"]], "rating"] == 5 and frame.loc[ids[order["2"]], "rating"] == 2
    assert frame.loc[list(TAKES), "rating_blind"].tolist() == [True, True]
    assert not frame.loc[ORIGINAL, "rating_blind"] and frame["rating_blind"].dtype == bool
    trials = brx.listening_tests()
    row = trials.iloc[0]
    assert row["mode"] == "rating" and row["mapping"] == {s: ids[k] for s, k in order.items()}
    assert row["answer"] == {ids[order["1"]]: 5, ids[order["2"]]: 2} and pd.isna(row["correct"])
    assert brx.listening_tests(summary=True).empty  # ABX pairs only
    brx.rate(TAKES[0], 3)  # stars given knowing the take: no longer blind
    assert not brx.frame().set_index("track_id").loc[TAKES[0], "rating_blind"]


# --- a stopped receiver, bad input ---------------------------------------------------------------


def test_with_the_receiver_stopped_nothing_claims_to_be_saved(brx, made):
    bt = audition(brx, blind=True, seed=1, trials=3)
    made.append(bt)
    bt.start()
    assert bt.disabled == ""
    brx.stop()
    assert "receiver is stopped" in bt.disabled and "snb.start_receiver(" in bt.disabled
    assert "blind.sqlite3" in bt.disabled  # the line that brings this store back
    send_from_page(bt, {"type": "answer", "x": "A"})
    assert bt.feedback == "Not saved: the store is closed."
    assert bt.phase == "trial" and bt.answer == ""  # not taken as answered
    send_from_page(bt, {"type": "start"})
    assert "receiver is stopped" in bt.feedback
    again = start_receiver(brx.store.path, tunnel=None, poll=False)
    assert again.listening_tests().empty  # nothing was written


def test_bad_options_name_the_field_and_change_nothing(brx, made):
    for kwargs, field in (
        ({"mode": "ab"}, "mode"),
        ({"trials": 0}, "trials"),
        ({"trials": 101}, "trials"),
        ({"pair": ("take1", "take1")}, "pair"),
        ({"pair": ("take1", "nope")}, "pair"),
        ({"context": -1}, "context"),
    ):
        with pytest.raises(ValueError, match=field):
            audition(brx, blind=True, **kwargs)
    bt = audition(brx, blind=True)
    made.append(bt)
    bt.trials = 0  # as a page could send it
    send_from_page(bt, {"type": "start"})
    assert "trials must be from 1 to 100, got 0" in bt.feedback and bt.phase == "setup"
    bt.trials, bt.mode = 3, "abc"
    send_from_page(bt, {"type": "start"})
    assert "mode must be" in bt.feedback and bt.phase == "setup"
    with pytest.raises(TypeError, match="seed"):
        audition(brx, seed=1)  # blind options without blind=True
    au = audition(brx)
    made.append(au)
    assert isinstance(au, Audition)
    ok = {"A": "t1", "B": "t2", "X": "t1"}
    bad = (
        Trial("s", 1, "abx", ok, "A", track_1="t1", track_2="t2", correct=False),  # it was right
        Trial("s", 1, "abx", {"A": "t1", "B": "t1", "X": "t1"}, "A", correct=True),
        Trial("s", 0, "abx", ok, "A", track_1="t1", track_2="t2", correct=True),
        Trial("s", 1, "abc", ok, "A"),
        Trial("s", 1, "rating", {"1": "t1"}, {"t1": 6}),
    )
    for trial in bad:
        with pytest.raises(ValueError):
            brx.store.record_trial(trial)
    good = Trial("s", 1, "abx", ok, "A", track_1="t1", track_2="t2", correct=True)
    brx.store.record_trial(good)
    with pytest.raises(ValueError, match="stored already"):
        brx.store.record_trial(good)
    assert len(brx.listening_tests()) == 1


# --- with audio: each slot plays its hidden track -----------------------------------------------


@pytest.mark.slow  # renders a song and a replace task in the Sandbox
def test_each_slot_sends_its_hidden_track_cut_to_the_window_aligned_and_level_matched(
    tmp_path, made
):
    import soundfile as sf

    from suno_nb import Faults
    from suno_nb.analysis import loudness, measure

    rx = start_receiver(tmp_path / "audio.sqlite3", tunnel=None, poll=False)
    with Sandbox(delay=0.3, retry_backoff=0.1) as sb:
        client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
        song = sb.create_song(duration=30, title="Harbour Lights", tags="indie pop")
        sb.inject(Faults(shift_ms=20), count=1)  # the takes come back 20 ms late
        job = client.replace_section(
            task_id=song.task_id, audio_id=song.audio_id, prompt="new words", tags="jazz",
            title="Take", full_lyrics="[Verse] la la\n[Chorus] new words",
            infill_start_s=10.0, infill_end_s=20.0, original_duration=song.duration,
        )  # fmt: skip
        rx.wait(job.task_id, timeout=WAIT_S, progress=False, raise_on_failure=True)
        bt = audition(rx, blind=True, seed=5, trials=2, pair=("take1", "original"), context=2)
        made.append(bt)
        assert bt.span == [8.0, 22.0] and bt.level_match
        deal = deal_abx(random.Random(5), ["take1", "original"])
        sent = sent_to_page(bt)
        bt.start()
        for slot in "ABX":
            send_from_page(bt, {"type": "audio", "slot": slot, "trial": 1})
        send_from_page(bt, {"type": "audio", "slot": "A", "trial": 2})  # not this trial: ignored
        assert bt.wait_idle(WAIT_S)
    stop_receiver()
    assert [(c["slot"], c["trial"], c["type"]) for c, _ in sent] == [
        ("A", 1, "audio"), ("B", 1, "audio"), ("X", 1, "audio"),
    ]  # fmt: skip
    got = {c["slot"]: bytes(b[0]) for c, b in sent}
    assert all(set(c) == {"type", "slot", "trial", "mime"} for c, _ in sent)  # no name, id, URL
    x_is = "A" if deal["X"] == deal["A"] else "B"
    assert got["X"] == got[x_is] and got["A"] != got["B"]  # X is its track, byte for byte
    windows, sections = {}, []
    for slot in "AB":
        data, sr = sf.read(io.BytesIO(got[slot]), dtype="float32")
        assert data.shape[0] == 14 * sr  # the window, 8-22 s, as long for every track
        windows[deal[slot]] = data.mean(axis=1) if data.ndim > 1 else data
        sections.append(loudness(data[2 * sr : 12 * sr], sr))  # the section inside it
    assert abs(sections[0] - sections[1]) < 0.2, sections  # level-matched
    # the take's window was moved by its 20 ms: switching lands on the same beat
    late = measure(windows["original"], windows["take1"], sr, 2.0, 12.0)["offset_ms"]
    assert abs(late) < 1.0, late


# --- a real browser ----------------------------------------------------------------------------

BLIND_NOTEBOOK = Path(__file__).parent / "browser" / "blind_demo.ipynb"


@pytest.mark.browser
@pytest.mark.slow
def test_an_abx_trial_answered_by_clicks_in_jupyterlab_is_stored(tmp_path):
    from .test_browser import ARTIFACTS, KERNEL_EXEC, _browse, _run_all, _serve, _shot

    serve, browse = contextmanager(_serve), contextmanager(_browse)
    with (
        serve(BLIND_NOTEBOOK, tmp_path) as lab,
        browse("--autoplay-policy=no-user-gesture-required") as page,
    ):
        _run_all(page, lab, BLIND_NOTEBOOK, ".snb-blind .snb-start")
        errors = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
        )
        assert errors.count() == 0, errors.all_inner_texts()
        root = page.locator(".snb-blind")
        assert root.locator("select.snb-pair1").input_value() == "take1"
        root.locator(".snb-start").click()
        page.wait_for_selector(".snb-blind[data-phase='trial']")
        # every slot's audio arrives from the kernel, as bytes
        page.wait_for_selector(".snb-blind[data-ready='true']", timeout=30_000)
        text = root.inner_text()
        assert "Take 1" not in text and "Original" not in text  # names hidden
        root.locator(".snb-switch[data-slot='A']").click()  # plays A
        page.wait_for_function(
            "() => parseFloat(document.querySelector('.snb-blind').dataset.position) > 17.5"
        )
        page.keyboard.press("x")  # to X at the same position
        assert page.get_attribute(".snb-blind", "data-active") == "X"
        times = page.evaluate(
            "() => [...document.querySelectorAll('.snb-blind audio.snb-media')]"
            ".map(a => ({slot: a.dataset.slot, t: a.currentTime, paused: a.paused}))"
        )
        by = {m["slot"]: m for m in times}
        assert by["A"]["paused"] and not by["X"]["paused"], times
        assert abs(by["X"]["t"] - by["A"]["t"]) < 0.5, times
        cells = page.locator(".jp-Notebook .jp-Cell").count()
        page.keyboard.press("b")  # JupyterLab's "insert below" must not fire
        assert page.locator(".jp-Notebook .jp-Cell").count() == cells
        _shot(root, "blind-trial.png")
        root.locator(".snb-answer[data-x='B']").click()
        page.wait_for_selector(".snb-blind[data-phase='answered'] .snb-reveal")
        assert "Answer saved" in root.inner_text()
        root.locator(".snb-reveal").click()
        page.wait_for_selector(".snb-blind .snb-result")
        assert "You said B" in root.locator(".snb-result").inner_text()
        _shot(root, "blind-revealed.png")
        out = page.evaluate(
            KERNEL_EXEC,
            "t = rx.listening_tests()\n"
            "print(len(t), t.iloc[0]['answer'], t.iloc[0]['trial'],"
            " sorted(t.iloc[0]['mapping']))",
        )
        assert out.strip() == "1 B 1 ['A', 'B', 'X']", out
        # the receiver stops: the controls are disabled, and the page says how to bring it back
        assert page.evaluate(KERNEL_EXEC, "rx.stop()") == ""
        page.wait_for_selector(".snb-blind[data-disabled='true']")
        banner = root.locator(".snb-disabled").inner_text()
        assert "receiver is stopped" in banner and "snb.start_receiver(" in banner, banner
        assert root.locator(".snb-next").is_disabled()
        _shot(root, "blind-stopped.png")
        assert (ARTIFACTS / "blind-trial.png").exists()


def test_level_matching_only_turns_the_louder_tracks_down():
    from suno_nb.widgets._blind_audio import gains, window

    got = gains({"a": -10.0, "b": -16.0, "c": float("-inf")})
    assert got["b"] == 1.0 and got["c"] == 1.0 and abs(got["a"] - 10 ** (-6 / 20)) < 1e-12
    assert gains({"a": float("nan")}) == {"a": 1.0}
    assert window([20.0, 32.0], 3.0) == (17.0, 35.0) and window([1.0, 12.0], 3.0) == (0.0, 15.0)


def test_every_colour_of_the_blind_test_is_a_theme_variable(brx, made):
    from .test_widgets_models import fixed_colours

    bt = audition(brx, blind=True)
    made.append(bt)
    state = bt.get_state()  # the module and styles, as the page gets them
    assert fixed_colours(state["_css"]) == [], fixed_colours(state["_css"])
    assert fixed_colours(state["_esm"]) == [], fixed_colours(state["_esm"])
