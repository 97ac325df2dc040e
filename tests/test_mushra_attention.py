"""Attention-check pages: configured in the pages file, answer key on the server only, a bot that fails them is
screened out by the analysis; the browser never receives which stimulus is degraded or the threshold."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from codecbench.listening_test.bundle import build_bundle, load_bundle
from codecbench.listening_test.server import ServerConfig, create_app, load_pages
from mushra_support import full_page, listen, write_run


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("attention")
    return build_bundle(write_run(root, n_items=2, duration_s=1.0), root / "bundle")


def _pages(tmp_path, **extra):
    path = tmp_path / "pages.json"
    path.write_text(json.dumps({"attention_checks": {"pages": 2, "max_score": 30}, **extra}))
    return load_pages(path)


def _client(bundle, tmp_path, pages):
    from fastapi.testclient import TestClient

    app = create_app(ServerConfig(bundle_dir=bundle, participants_per_minute_per_client=1000, pages=pages,
                                  admin_token="a" * 20), tmp_path / "r.sqlite")
    client = TestClient(app)
    client.app_state = app.state
    return client


def test_config_is_checked(tmp_path):
    from codecbench.bench.core.errors import ConfigError

    for bad in ({"pages": 0}, {"pages": 6}, {"max_score": 95}, {"pages": 1, "answer": 3}, {"pages": "2"}, [1]):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({"attention_checks": bad}))
        with pytest.raises(ConfigError, match="'attention_checks' must be"):
            load_pages(path)
    assert _pages(tmp_path)["attention_checks"] == {"pages": 2, "max_score": 30}


def test_attention_pages_look_like_trials_and_carry_no_key(bundle, tmp_path):
    import soundfile as sf

    roles = {s["id"]: s["role"] for item in load_bundle(bundle)["items"] for s in item["stimuli"]}
    with _client(bundle, tmp_path, _pages(tmp_path)) as client:
        info = client.get("/api/test").json()
        assert "attention_checks" not in info["pages"] and info["n_pages"] == 5
        session = client.post("/api/participants", json={"consent": True}).json()
        pid = session["participant_id"]
        plan = client.app_state.store.participant(pid)["plan"]
        checks = [p for p in plan if p.get("attention")]
        assert len(checks) == 2 and len(session["pages"]) == 5 and not plan[0].get("attention")
        # what the browser receives: same keys and shapes on every page, no trace of the key
        seen = [client.get("/api/test").text, json.dumps(session), client.get(f"/api/participants/{pid}").text,
                client.get("/").text, *(client.get(f"/page/{f}").text for f in ("mushra.js", "index.html"))]
        for text in seen:
            for secret in ("attention", "max_score", "degraded", '"30"'):
                assert secret not in text, secret
        shapes = {(tuple(sorted(p)), len(p["stimuli"]), p["training"]) for p in session["pages"][1:]}
        assert len(shapes) == 1
        for check in checks:
            public = session["pages"][check["index"]]
            degraded_id = check["audio_ids"][check["attention"]["degraded"]]
            assert roles[check["attention"]["degraded"]] != "reference"
            responses = {s["id"]: client.get("/" + s["url"]) for s in public["stimuli"]}
            assert len({len(r.content) for r in responses.values()}) == 1  # same size as every other stimulus
            assert len({tuple(sorted((k, v) for k, v in r.headers.items() if k != "date"))
                        for r in responses.values()}) == 1
            ref, _ = sf.read(io.BytesIO(client.get("/" + public["reference"]).content), dtype="float64")
            bad, _ = sf.read(io.BytesIO(responses[degraded_id].content), dtype="float64")
            snr_db = 10 * np.log10(np.sum(ref**2) / np.sum((bad - ref) ** 2))
            assert snr_db == pytest.approx(0.0, abs=0.5)  # obviously degraded: noise as loud as the signal


def _take_test(client, grade_of) -> str:
    """One participant through every page; ``grade_of(plan_page, bundle_stimulus_id)`` gives the grade."""
    session = client.post("/api/participants", json={"consent": True}).json()
    pid = session["participant_id"]
    plan = client.app_state.store.participant(pid)["plan"]
    for page, mine in zip(session["pages"], plan):
        listen(client, page)
        to_sid = {aid: sid for sid, aid in mine["audio_ids"].items()}
        body = full_page(page, lambda i, aid, mine=mine, to_sid=to_sid: grade_of(mine, to_sid[aid]))
        for r in body["ratings"]:
            r["played_s"] = 4.0
        response = client.post(f"/api/participants/{pid}/pages/{page['index']}", json=body)
        assert response.status_code == 200, response.text
    client.post(f"/api/participants/{pid}/finish").raise_for_status()
    return pid


def test_a_bot_that_fails_the_attention_checks_is_screened_out(bundle, tmp_path):
    from codecbench.listening_test.analysis import analyze_frame

    roles = {s["id"]: s["role"] for item in load_bundle(bundle)["items"] for s in item["stimuli"]}
    grade = {"reference": 100, "anchor_7k": 45, "anchor_3k5": 20, "test": 70}

    def listener(page, sid):
        if page.get("attention") and sid == page["attention"]["degraded"]:
            return 10
        return grade[roles[sid]]

    def bot(page, sid):  # listens as long as the others (passes the behaviour rule) but grades by position
        return 100 if roles[sid] == "reference" else 80

    with _client(bundle, tmp_path, _pages(tmp_path)) as client:
        honest = [_take_test(client, listener) for _ in range(4)]
        cheat = _take_test(client, bot)
        frame = client.app_state.store.ratings_frame()
        assert "attention_degraded" not in set(frame["condition"])  # attention grades are not ratings
        assert len(frame) == 5 * 2 * 6
        per = frame.groupby("participant_id")[["attention_checks", "attention_failed"]].max()
        assert per.loc[cheat].tolist() == [2, 2] and all(per.loc[p].tolist() == [2, 0] for p in honest)
        result = analyze_frame(frame, tmp_path / "out", n_resamples=200, min_assessors=2)
        report = client.get("/api/admin/report.html?n_resamples=200", headers={"Authorization": "Bearer " + "a" * 20})
    assert result.screening.excluded == (cheat,)
    record = {a.participant_id: a for a in result.screening.assessors}[cheat]
    assert "failed 2 of 2 attention checks" in record.reason and record.attention_failed == 2
    assert "failed 2 of 2 attention checks" in report.text
    kept = analyze_frame(frame, tmp_path / "off", n_resamples=200, min_assessors=2, attention=False)
    assert cheat in kept.screening.kept  # the rule is what screens it out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["rules"]["attention_rule"] is True and summary["rules"]["max_attention_failures"] == 0


def test_plans_with_attention_pages_still_play_after_a_restart_without_the_config(bundle, tmp_path):
    """The answer key lives in each stored plan: removing ``attention_checks`` from the config and restarting
    neither breaks those participants' audio nor their checks."""
    with _client(bundle, tmp_path, _pages(tmp_path)) as client:
        session = client.post("/api/participants", json={"consent": True}).json()
        plan = client.app_state.store.participant(session["participant_id"])["plan"]
    check = next(p for p in plan if p.get("attention"))
    with _client(bundle, tmp_path, None) as client:
        page = session["pages"][check["index"]]
        listen(client, page)
        to_sid = {aid: sid for sid, aid in check["audio_ids"].items()}
        body = full_page(page, lambda i, aid: 100 if to_sid[aid] != check["attention"]["degraded"] else 90)
        if all(r["score"] != 100 for r in body["ratings"]):
            body["ratings"][0]["score"] = 100
        url = f"/api/participants/{session['participant_id']}/pages/{check['index']}"
        assert client.post(url, json=body).status_code == 200
        frame = client.app_state.store.ratings_frame()
    assert frame.empty  # the attention page's grades are not ratings
    import sqlite3

    with sqlite3.connect(tmp_path / "r.sqlite") as conn:
        outcome = conn.execute("SELECT score, max_score, passed FROM attention").fetchall()
    conn.close()
    assert outcome == [(90, 30, 0)]  # graded 90 > 30: failed
