"""MUSHRA server (in-process test client): flow, resume, idempotency, validation and security refusals."""

from __future__ import annotations

import io

import pytest
from codecbench.listening_test.bundle import build_bundle
from codecbench.listening_test.server import ServerConfig, create_app, make_plan
from codecbench.listening_test.store import RatingsStore
from mushra_support import full_page, listen, write_run

TOKEN = "admin-token-0123456789"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("srv")
    return build_bundle(write_run(root, n_items=2, duration_s=1.0), root / "bundle")


@pytest.fixture
def client(bundle, tmp_path):
    from fastapi.testclient import TestClient

    app = create_app(ServerConfig(bundle_dir=bundle, admin_token=TOKEN, max_body_bytes=4096), tmp_path / "r.sqlite")
    with TestClient(app) as c:
        c.store = app.state.store
        yield c


def _start(client):
    response = client.post("/api/participants", json={"consent": True})
    assert response.status_code == 200
    return response.json()


def test_full_flow_resume_and_completion_code(client):
    session = _start(client)
    pid, pages = session["participant_id"], session["pages"]
    assert len(pages) == 3 and pages[0]["training"] and not pages[1]["training"]
    assert client.post(f"/api/participants/{pid}/finish").status_code == 409
    for page in pages[:2]:
        listen(client, page)
        r = client.post(f"/api/participants/{pid}/pages/{page['index']}", json=full_page(page))
        assert r.json() == {"status": "stored", "revision": 1}
    resumed = client.get(f"/api/participants/{pid}").json()
    assert resumed["done_pages"] == [0, 1] and resumed["pages"] == pages  # same seeded plan after a reload
    listen(client, pages[2])
    client.post(f"/api/participants/{pid}/pages/2", json=full_page(pages[2]))
    code = client.post(f"/api/participants/{pid}/finish").json()["completion_code"]
    assert code.startswith("CB-") and client.post(f"/api/participants/{pid}/finish").json()["completion_code"] == code
    # the training page is recorded as done but its grades are discarded: 2 rated pages x 6 stimuli
    assert client.store.counts() == {"participants": 1, "pages": 3, "ratings": 12}
    frame = client.store.ratings_frame()
    assert set(frame["page_index"]) == {1, 2}
    assert sorted(frame.groupby("page_index")["role"].apply(sorted).iloc[0]) == sorted(
        ["reference", "anchor_7k", "anchor_3k5", "test", "test", "test"])


def test_retry_is_idempotent_and_conflict_keeps_first(client):
    session = _start(client)
    pid, page = session["participant_id"], session["pages"][1]
    first = full_page(page)
    listen(client, page)
    assert client.post(f"/api/participants/{pid}/pages/1", json=first).json() == {"status": "stored", "revision": 1}
    assert client.post(f"/api/participants/{pid}/pages/1", json=first).json() == {"status": "duplicate", "revision": 1}
    other = full_page(page, lambda i, sid: 100)
    response = client.post(f"/api/participants/{pid}/pages/1", json=other)
    assert response.status_code == 409 and "stored grades are kept" in response.json()["detail"]
    frame = client.store.ratings_frame()
    assert len(frame) == 6 and sorted(frame["score"]) == [40] * 5 + [100]


def test_plan_is_seeded_and_shuffled(bundle):
    from codecbench.listening_test.bundle import load_bundle

    description = load_bundle(bundle)
    assert make_plan(description, 5) == make_plan(description, 5)
    plans = [make_plan(description, seed) for seed in range(20)]
    assert len({tuple(p[1]["stimuli"]) for p in plans}) > 10  # condition order varies
    assert {tuple(pg["item"] for pg in p[1:]) for p in plans} == {("i01", "i02"), ("i02", "i01")}
    assert all(p[0]["training"] and p[0]["item"] == "i01" for p in plans)


def _nothing_stored(client, pid):
    assert client.store.counts()["pages"] == 0 and client.store.counts()["ratings"] == 0
    assert client.get(f"/api/participants/{pid}").json()["done_pages"] == []


@pytest.mark.parametrize(
    ("mutate", "status", "detail"),
    [
        (lambda b: b["ratings"][1].update(score=101), 422, "less than or equal to 100"),
        (lambda b: b["ratings"][1].update(score=-1), 422, "greater than or equal to 0"),
        (lambda b: b["ratings"][1].update(score=50.5), 422, "valid integer"),
        (lambda b: b["ratings"][1].update(score="50"), 422, "valid integer"),
        (lambda b: b["ratings"][1].update(stimulus_id="s_not_there"), 422, "unknown stimulus id 's_not_there'"),
        (lambda b: b["ratings"].pop(), 422, "must be rated; missing 1"),
        (lambda b: b["ratings"].append(dict(b["ratings"][1])), 422, "rated more than once"),
        (lambda b: b["ratings"][0].update(score=99), 422, "at least one stimulus must be rated 100"),
        (lambda b: b.update(extra="x"), 422, "Extra inputs are not permitted"),
    ],
)
def test_invalid_ratings_are_refused_and_nothing_stored(client, mutate, status, detail):
    session = _start(client)
    pid, page = session["participant_id"], session["pages"][1]
    body = full_page(page)
    mutate(body)
    response = client.post(f"/api/participants/{pid}/pages/1", json=body)
    assert response.status_code == status
    assert detail in str(response.json()["detail"])
    _nothing_stored(client, pid)


def test_unknown_participant_and_page(client):
    session = _start(client)
    page = session["pages"][1]
    assert client.post("/api/participants/AAAAAAAAAAAAAAAAAAAAAAAA/pages/1", json=full_page(page)).status_code == 404
    assert client.get("/api/participants/..%2F..%2Fetc").status_code == 404
    r = client.post(f"/api/participants/{session['participant_id']}/pages/7", json=full_page(page))
    assert r.status_code == 404 and "page 7 does not exist (pages 0 to 2)" in r.json()["detail"]
    _nothing_stored(client, session["participant_id"])


def test_oversized_payload_refused(client):
    session = _start(client)
    pid, page = session["participant_id"], session["pages"][1]
    body = full_page(page)
    body["ratings"][0]["stimulus_id"] = body["ratings"][0]["stimulus_id"] + " " * 5000
    response = client.post(f"/api/participants/{pid}/pages/1", json=body)
    assert response.status_code == 413 and "larger than 4096 bytes" in response.json()["detail"]
    chunked = client.post(f"/api/participants/{pid}/pages/1", content=iter([b"{" + b" " * 3000, b" " * 3000 + b"}"]),
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    _nothing_stored(client, pid)


@pytest.mark.parametrize(
    "path",
    ["/audio/../bundle.json", "/audio/i01/..%2F..%2Fbundle.json", "/audio/%2e%2e/%2e%2e/bundle.json",
     "/page/..%2Fbundle.json", "/bundle.json", "/page/../bundle.json", "/audio/i01/ref.wav%00.txt",
     "/page/%2Fetc%2Fpasswd", "/audio/i01/..%5C..%5Cbundle.json", "/r.sqlite", "/docs", "/openapi.json"],
)
def test_path_traversal_refused(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert b"salt" not in response.content and b"condition" not in response.content


def test_served_files(client):
    assert client.get("/").text.startswith("<!doctype html>")
    assert client.get("/page/mushra.js").headers["content-type"].startswith("text/javascript")
    session = _start(client)
    for s in session["pages"][1]["stimuli"]:
        response = client.get("/" + s["url"])
        assert response.status_code == 200 and response.content[:4] == b"RIFF"
    # participants never see condition names
    assert "opus" not in str(session) and "lowpass" not in str(session) and "reference\"" not in str(session)


def test_export_requires_token(client):
    session = _start(client)
    pid = session["participant_id"]
    listen(client, session["pages"][1])
    client.post(f"/api/participants/{pid}/pages/1", json=full_page(session["pages"][1]))
    assert client.get("/api/admin/export.csv").status_code == 401
    assert client.get("/api/admin/export.parquet").status_code == 401
    wrong = client.get("/api/admin/export.csv", headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 403 and "wrong admin token" in wrong.json()["detail"]
    assert "score" not in client.get(f"/api/participants/{pid}").text
    ok = client.get("/api/admin/export.csv", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.text.count("\n") == 7
    import pandas as pd

    parquet = client.get("/api/admin/export.parquet", headers={"Authorization": f"Bearer {TOKEN}"})
    frame = pd.read_parquet(io.BytesIO(parquet.content))
    assert len(frame) == 6 and set(frame["participant_id"]) == {pid}


def test_export_disabled_without_token(bundle, tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(create_app(ServerConfig(bundle_dir=bundle), tmp_path / "r.sqlite")) as c:
        r = c.get("/api/admin/export.csv", headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "exports are disabled" in r.json()["detail"]


def test_store_refuses_unknown_schema(tmp_path):
    import sqlite3

    from codecbench.listening_test.store import StoreError

    store = RatingsStore(tmp_path / "r.sqlite")
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match="schema version '99' is not supported"):
        RatingsStore(tmp_path / "r.sqlite")


def _played(body: dict, seconds: float) -> dict:
    for r in body["ratings"]:
        r["played_s"], r["slider_moves"] = seconds, 1
    return body


def test_previous_page_changes_grades_as_a_new_revision_and_keeps_the_first(client):
    """Previous: an earlier page resubmitted with ``replaces_revision`` = its latest revision is stored as the next
    revision; the analysis reads the latest, every revision stays in the history; stale or unnamed resubmits,
    pages never stored and finished participants are refused; nobody reaches another participant's pages."""
    import json

    from codecbench.listening_test.analysis import summarise

    a, b = _start(client), _start(client)
    pid, pages = a["participant_id"], a["pages"]
    for page in pages:
        listen(client, page)
    listen(client, b["pages"][1])
    url = f"/api/participants/{pid}/pages/1"
    first = _played(full_page(pages[1]), 2.0)
    assert client.post(url, json=first).json() == {"status": "stored", "revision": 1}
    b_body = _played(full_page(b["pages"][1], lambda i, sid: 100 if i == 0 else 70), 3.0)
    client.post(f"/api/participants/{b['participant_id']}/pages/1", json=b_body).raise_for_status()
    # going back: other grades, naming revision 1 as the one replaced
    changed = _played(full_page(pages[1], lambda i, sid: 100 if i == 0 else 20), 1.5)
    changed["replaces_revision"] = 1
    assert client.post(url, json=changed).json() == {"status": "stored", "revision": 2}
    assert client.post(url, json=changed).json() == {"status": "duplicate", "revision": 2}  # a retry
    stale = _played(full_page(pages[1], lambda i, sid: 100), 1.0)
    stale["replaces_revision"] = 1  # another tab that still thinks revision 1 is the latest
    response = client.post(url, json=stale)
    assert response.status_code == 409 and response.json()["revision"] == 2
    del stale["replaces_revision"]
    assert client.post(url, json=stale).status_code == 409  # no revision named: never a silent replacement
    never = full_page(pages[2])
    never["replaces_revision"] = 1
    assert client.post(f"/api/participants/{pid}/pages/2", json=never).status_code == 409
    # another participant's stimulus ids are refused on one's own pages (and one's own path is the only way in)
    foreign = full_page(b["pages"][1])
    foreign["replaces_revision"] = 2
    assert client.post(url, json=foreign).status_code == 422
    assert client.get(f"/api/participants/{pid}").json()["revisions"] == [0, 2, 0]
    frame = client.store.ratings_frame()
    mine, theirs = frame[frame.participant_id == pid], frame[frame.participant_id == b["participant_id"]]
    assert sorted(mine["score"]) == [20] * 5 + [100] and set(mine["revision"]) == {2}
    assert sorted(theirs["score"]) == [70] * 5 + [100] and set(theirs["revision"]) == {1}
    assert list(mine["played_s"]) == [3.5] * 6 and list(mine["slider_moves"]) == [2] * 6  # both visits' listening
    assert summarise(mine, ["participant_id"], n_resamples=100)["mean"].iloc[0] == pytest.approx((100 + 5 * 20) / 6)
    history = client.store.history_frame()
    page1 = history[(history.participant_id == pid) & (history.page_index == 1)]
    assert list(page1["revision"]) == [1, 2]
    assert sorted(g["score"] for g in json.loads(page1["ratings_json"].iloc[0])) == [40] * 5 + [100]  # first intact
    assert sorted(g["score"] for g in json.loads(page1["ratings_json"].iloc[1])) == [20] * 5 + [100]
    assert client.get("/api/admin/history.csv").status_code == 401
    csv = client.get("/api/admin/history.csv", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert csv.count(f"{pid},1,") == 2
    # once finished, pages are final
    for page in (pages[0], pages[2]):
        client.post(f"/api/participants/{pid}/pages/{page['index']}", json=full_page(page)).raise_for_status()
    client.post(f"/api/participants/{pid}/finish").raise_for_status()
    late = _played(full_page(pages[1], lambda i, sid: 100 if i == 0 else 90), 1.0)
    late["replaces_revision"] = 2
    response = client.post(url, json=late)
    assert response.status_code == 409 and response.json()["status"] == "final"
    assert sorted(client.store.ratings_frame().query("participant_id == @pid and page_index == 1")["score"]) == [
        20] * 5 + [100]


def test_admin_report_behind_the_token(client):
    assert client.get("/api/admin/report.html").status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    empty = client.get("/api/admin/report.html", headers=auth)
    assert empty.status_code == 409 and "No ratings stored yet" in empty.text
    for _ in range(3):
        session = _start(client)
        for page in session["pages"]:
            listen(client, page)
            body = _played(full_page(page), 5.0)
            client.post(f"/api/participants/{session['participant_id']}/pages/{page['index']}",
                        json=body).raise_for_status()
    response = client.get("/api/admin/report.html?n_resamples=200", headers=auth)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "<h1>MUSHRA results</h1>" in response.text and "3 assessors before post-screening" in response.text
    assert "script-src" not in response.headers["content-security-policy"]  # no script at all on this page
    assert "img-src data:" in response.headers["content-security-policy"]
    assert client.get("/api/admin/report.html?n_resamples=5", headers=auth).status_code == 422
