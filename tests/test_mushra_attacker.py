"""The participant as attacker: can the hidden reference (or any role) be found from what the server sends,
without listening? Hashes, sizes, headers, id order, display order, timing and sharing ids between participants.

Each strategy is scored over 30 participants against the truth (which the test reads from the server's own
database); chance is 1 in 6 (6 stimuli per trial). A strategy that finds the hidden reference on more than half
of the trials fails the test (P(>= 15 of 30) at chance is below 1e-4).
"""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np
import pytest
from codecbench.listening_test.bundle import build_bundle, load_bundle
from codecbench.listening_test.server import ServerConfig, create_app
from mushra_support import full_page, listen, write_run

N_PARTICIPANTS = 30


@pytest.fixture(scope="module")
def observed(tmp_path_factory):
    """Per participant: page 1's reference and stimulus responses (bytes, headers, fetch times) and the truth."""
    from fastapi.testclient import TestClient

    root = tmp_path_factory.mktemp("attack")
    bundle = build_bundle(write_run(root, n_items=2, duration_s=1.0), root / "bundle")
    roles = {s["id"]: s["role"] for item in load_bundle(bundle)["items"] for s in item["stimuli"]}
    app = create_app(ServerConfig(bundle_dir=bundle, participants_per_minute_per_client=1000), root / "r.sqlite")
    trials = []
    with TestClient(app) as client:
        for _ in range(N_PARTICIPANTS):
            session = client.post("/api/participants", json={"consent": True}).json()
            page = session["pages"][1]
            ref = client.get("/" + page["reference"])
            stimuli = []
            for s in page["stimuli"]:
                times = []
                for _ in range(3):
                    t0 = time.perf_counter()
                    response = client.get("/" + s["url"])
                    times.append(time.perf_counter() - t0)
                stimuli.append({"id": s["id"], "response": response, "time_s": float(np.median(times))})
            plan = app.state.store.participant(session["participant_id"])["plan"][1]
            truth = {aid: roles[sid] for sid, aid in plan["audio_ids"].items()}
            trials.append({"session": session, "page": page, "ref": ref, "stimuli": stimuli, "truth": truth,
                           "plan": plan})
    return trials


def _hidden(trial) -> str:
    return next(aid for aid, role in trial["truth"].items() if role == "reference")


def _success_rate(trials, guess) -> float:
    return float(np.mean([guess(t) == _hidden(t) for t in trials]))


def test_no_two_responses_are_byte_identical_but_reference_samples_are(observed):
    import soundfile as sf

    for trial in observed:
        hashes = [hashlib.sha256(s["response"].content).hexdigest() for s in trial["stimuli"]]
        ref_hash = hashlib.sha256(trial["ref"].content).hexdigest()
        assert len(set(hashes + [ref_hash])) == len(hashes) + 1  # the hidden reference differs from ref on the wire
        hidden = next(s for s in trial["stimuli"] if s["id"] == _hidden(trial))
        a, rate_a = sf.read(io.BytesIO(trial["ref"].content), dtype="int16")
        b, rate_b = sf.read(io.BytesIO(hidden["response"].content), dtype="int16")
        assert rate_a == rate_b and np.array_equal(a, b)  # ... and sample-identical after decoding
    # the same signal fetched twice differs too, so hashes cannot be matched across participants
    all_hashes = [hashlib.sha256(s["response"].content).hexdigest() for t in observed for s in t["stimuli"]]
    assert len(set(all_hashes)) == len(all_hashes)


def test_sizes_and_headers_reveal_nothing(observed):
    for trial in observed:
        responses = [trial["ref"]] + [s["response"] for s in trial["stimuli"]]
        assert len({len(r.content) for r in responses}) == 1  # every signal of a trial has the same size
        header_sets = {tuple(sorted((k, v) for k, v in r.headers.items() if k != "date")) for r in responses}
        assert len(header_sets) == 1, header_sets  # identical headers, nothing per file
        headers = dict(responses[0].headers)
        for leak in ("etag", "last-modified", "content-disposition", "accept-ranges"):
            assert leak not in headers
        assert headers["cache-control"] == "no-store"


def test_ids_are_per_participant_and_order_carries_nothing(observed):
    all_ids = [s["id"] for t in observed for s in t["stimuli"]] + [t["page"]["reference"] for t in observed]
    assert len(set(all_ids)) == len(all_ids)  # no id is shared between participants (or pages)
    bundle_ids = {sid for t in observed for sid in t["plan"]["audio_ids"]}
    text = str([t["session"] for t in observed])
    assert not any(sid in text for sid in bundle_ids)  # the bundle's stable ids never reach the browser
    assert "reference\"" not in text and "lowpass" not in text and "opus" not in text
    strategies = {
        "first displayed": lambda t: t["stimuli"][0]["id"],
        "last displayed": lambda t: t["stimuli"][-1]["id"],
        "smallest id": lambda t: min(s["id"] for s in t["stimuli"]),
        "largest id": lambda t: max(s["id"] for s in t["stimuli"]),
    }
    for name, guess in strategies.items():
        assert _success_rate(observed, guess) <= 0.5, name
    # a role sits at every display position over the participants (order is shuffled per participant)
    positions = {[s["id"] for s in t["stimuli"]].index(_hidden(t)) for t in observed}
    assert len(positions) >= 4


def test_hash_and_timing_attacks_fail(observed):
    def same_hash_as_ref(t):
        ref = hashlib.sha256(t["ref"].content).hexdigest()
        return next((s["id"] for s in t["stimuli"] if hashlib.sha256(s["response"].content).hexdigest() == ref), None)

    def same_data_chunk_offset(t):  # a file written differently (other header layout) would stand out here
        ref_at = t["ref"].content.find(b"data")
        return next((s["id"] for s in t["stimuli"] if s["response"].content.find(b"data") != ref_at), None)

    assert _success_rate(observed, same_hash_as_ref) == 0.0
    assert _success_rate(observed, same_data_chunk_offset) == 0.0
    strategies = {
        "fastest": lambda t: min(t["stimuli"], key=lambda s: s["time_s"])["id"],
        "slowest": lambda t: max(t["stimuli"], key=lambda s: s["time_s"])["id"],
    }
    for name, guess in strategies.items():
        assert _success_rate(observed, guess) <= 0.5, name


def test_a_leak_would_be_caught(observed):
    """Control: the scoring finds a planted leak (the truth itself, or a size that differs for the hidden ref)."""
    assert _success_rate(observed, _hidden) == 1.0

    def size_outlier(t):
        sizes = {s["id"]: len(s["response"].content) + (1 if s["id"] == _hidden(t) else 0) for s in t["stimuli"]}
        return max(sizes, key=sizes.get)

    assert _success_rate(observed, size_outlier) == 1.0


def test_ids_of_another_participant_are_refused(tmp_path):
    """Sharing answers fails: B's audio ids are unknown to A's session, for audio and for grades."""
    from fastapi.testclient import TestClient

    bundle = build_bundle(write_run(tmp_path, n_items=1, duration_s=1.0), tmp_path / "bundle")
    with TestClient(create_app(ServerConfig(bundle_dir=bundle), tmp_path / "r.sqlite")) as client:
        a, b = (client.post("/api/participants", json={"consent": True}).json() for _ in range(2))
        foreign = f"/api/participants/{a['participant_id']}/audio/{b['pages'][1]['stimuli'][0]['id']}"
        assert client.get(foreign).status_code == 404
        listen(client, a["pages"][1])
        response = client.post(f"/api/participants/{a['participant_id']}/pages/1", json=full_page(b["pages"][1]))
        assert response.status_code == 422 and "unknown stimulus id" in response.json()["detail"]


def test_attention_checks_give_the_browser_no_answer_key(tmp_path):
    """With attention-check pages: nothing the browser receives names them, their threshold or the degraded
    stimulus, and display order, id order, size and timing do not find the degraded stimulus (chance 1 in 5)."""
    import json

    from codecbench.listening_test.server import load_pages
    from fastapi.testclient import TestClient

    pages_file = tmp_path / "pages.json"
    pages_file.write_text(json.dumps({"attention_checks": {"pages": 1, "max_score": 25}}))
    bundle = build_bundle(write_run(tmp_path, n_items=2, duration_s=1.0), tmp_path / "bundle")
    app = create_app(ServerConfig(bundle_dir=bundle, participants_per_minute_per_client=1000,
                                  pages=load_pages(pages_file)), tmp_path / "r.sqlite")
    trials = []
    with TestClient(app) as client:
        assert "attention" not in client.get("/api/test").text and "25" not in client.get("/api/test").text
        for _ in range(N_PARTICIPANTS):
            session = client.post("/api/participants", json={"consent": True}).json()
            text = json.dumps(session) + client.get(f"/api/participants/{session['participant_id']}").text
            assert "attention" not in text and "degraded" not in text and "max_score" not in text
            plan = app.state.store.participant(session["participant_id"])["plan"]
            check = next(p for p in plan if p.get("attention"))
            page = session["pages"][check["index"]]
            stimuli = []
            for s in page["stimuli"]:
                t0 = time.perf_counter()
                response = client.get("/" + s["url"])
                stimuli.append({"id": s["id"], "size": len(response.content), "time_s": time.perf_counter() - t0})
            trials.append({"stimuli": stimuli, "degraded": check["audio_ids"][check["attention"]["degraded"]]})
    strategies = {
        "first displayed": lambda t: t["stimuli"][0]["id"],
        "last displayed": lambda t: t["stimuli"][-1]["id"],
        "smallest id": lambda t: min(s["id"] for s in t["stimuli"]),
        "largest id": lambda t: max(s["id"] for s in t["stimuli"]),
        "largest response": lambda t: max(t["stimuli"], key=lambda s: (s["size"], s["id"]))["id"],
        "slowest": lambda t: max(t["stimuli"], key=lambda s: s["time_s"])["id"],
    }
    for name, guess in strategies.items():
        assert np.mean([guess(t) == t["degraded"] for t in trials]) <= 0.5, name
    assert all(len({s["size"] for s in t["stimuli"]}) == 1 for t in trials)
