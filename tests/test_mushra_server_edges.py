"""MUSHRA server edges: non-finite numbers, security headers, participant creation (consent, origin, caps, rate
limits), database file mode, export columns, the admin token from the environment, the access log, and bots."""

from __future__ import annotations

import io
import stat

import pytest
from codecbench.listening_test.bundle import build_bundle
from codecbench.listening_test.server import ServerConfig, create_app
from mushra_support import full_page, listen, write_run

TOKEN = "admin-token-0123456789"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("edges")
    return build_bundle(write_run(root, n_items=1, duration_s=1.0), root / "bundle")


def _client(bundle, tmp_path, **config):
    from fastapi.testclient import TestClient

    app = create_app(ServerConfig(bundle_dir=bundle, admin_token=TOKEN, **config), tmp_path / "r.sqlite")
    client = TestClient(app)
    client.store = app.state.store
    return client


def _start(client, **headers):
    return client.post("/api/participants", json={"consent": True}, headers=headers)


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["score", "page_duration_s", "played_s", "reference_played_s"])
def test_non_finite_numbers_are_422_not_500(bundle, tmp_path, number, field):
    with _client(bundle, tmp_path) as client:
        session = _start(client).json()
        page = session["pages"][1]
        listen(client, page)
        body = full_page(page)
        marker = "__NUMBER__"
        if field in ("score", "played_s"):
            body["ratings"][1][field] = marker
        else:
            body[field] = marker
        import json

        raw = json.dumps(body).replace(f'"{marker}"', number)
        response = client.post(f"/api/participants/{session['participant_id']}/pages/1", content=raw,
                               headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        assert client.store.counts()["pages"] == 0
        raw = json.dumps({"consent": True, "sample_rate_hz": marker}).replace(f'"{marker}"', number)
        created = client.post("/api/participants", content=raw, headers={"content-type": "application/json"})
        assert created.status_code == 422


def test_security_headers_everywhere(bundle, tmp_path):
    with _client(bundle, tmp_path) as client:
        session = _start(client).json()
        for path in ["/", "/page/mushra.js", "/api/test", "/" + session["pages"][0]["reference"], "/nope"]:
            headers = client.get(path).headers
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert "script-src 'self'" in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY"
            assert headers["x-content-type-options"] == "nosniff"
            assert "etag" not in headers and "last-modified" not in headers


def test_participant_creation_needs_consent_same_origin_and_is_capped(bundle, tmp_path):
    with _client(bundle, tmp_path, max_participants=3, participants_per_minute_per_client=100) as client:
        assert client.post("/api/participants").status_code == 422  # no body
        assert client.post("/api/participants", json={}).status_code == 422  # no consent field
        refused = client.post("/api/participants", json={"consent": False})
        assert refused.status_code == 422 and "consent is required" in refused.json()["detail"]
        assert _start(client, origin="https://evil.example").status_code == 403
        assert _start(client, **{"sec-fetch-site": "cross-site"}).status_code == 403
        assert _start(client, origin="http://testserver").status_code == 200  # the page's own origin
        assert _start(client).status_code == 200  # no Origin (curl, the test client): allowed
        assert _start(client, **{"sec-fetch-site": "same-origin"}).status_code == 200
        capped = _start(client)
        assert capped.status_code == 503 and "no more participants" in capped.json()["detail"]
        assert client.store.counts()["participants"] == 3
    with _client(bundle, tmp_path / "b", allowed_origins=("https://panel.example",)) as client:
        assert _start(client, origin="https://panel.example").status_code == 200


def test_rate_limits_per_client_and_overall(bundle, tmp_path):
    with _client(bundle, tmp_path, participants_per_minute_per_client=3) as client:
        assert [_start(client).status_code for _ in range(5)] == [200, 200, 200, 429, 429]
    with _client(bundle, tmp_path / "g", participants_per_minute=2, participants_per_minute_per_client=100) as client:
        assert [_start(client).status_code for _ in range(3)] == [200, 200, 429]


def test_database_is_owner_only_and_export_has_participant_columns(bundle, tmp_path):
    import pandas as pd

    with _client(bundle, tmp_path) as client:
        session = _start(client, **{"user-agent": "Mozilla/5.0 (test agent)"}).json()
        pid = session["participant_id"]
        for page in session["pages"]:
            listen(client, page)
            assert client.post(f"/api/participants/{pid}/pages/{page['index']}", json=full_page(page)).status_code == 200
        code = client.post(f"/api/participants/{pid}/finish").json()["completion_code"]
        export = client.get("/api/admin/export.parquet", headers={"Authorization": f"Bearer {TOKEN}"})
    assert stat.S_IMODE((tmp_path / "r.sqlite").stat().st_mode) == 0o600
    import sqlite3

    with sqlite3.connect(tmp_path / "r.sqlite") as conn:  # while a connection is open, the WAL exists
        conn.execute("INSERT INTO meta (key, value) VALUES ('probe', '1')")
        assert stat.S_IMODE((tmp_path / "r.sqlite-wal").stat().st_mode) == 0o600  # SQLite copies the db's mode
    conn.close()
    frame = pd.read_parquet(io.BytesIO(export.content))
    assert set(frame["completion_code"]) == {code}
    assert set(frame["user_agent"]) == {"Mozilla/5.0 (test agent)"}
    assert frame["finished_utc"].notna().all() and frame["created_utc"].notna().all()
    assert (frame["audio_fetched"] == 7).all() and frame["server_page_time_s"].notna().all()


def test_env_admin_token_must_have_16_characters(bundle, tmp_path, monkeypatch, capsys):
    from codecbench.bench.cli import main

    monkeypatch.setenv("CODECBENCH_MUSHRA_ADMIN_TOKEN", "short")
    assert main(["mushra", "serve", str(bundle), "--db", str(tmp_path / "r.sqlite")]) == 2
    assert "CODECBENCH_MUSHRA_ADMIN_TOKEN: token shorter than 16 characters (5)" in capsys.readouterr().err
    assert not (tmp_path / "r.sqlite").exists()  # refused before anything is served or created


def test_access_log_has_no_participant_ids(bundle, tmp_path):
    import httpx
    from mushra_support import ServerProcess

    server = ServerProcess(bundle, tmp_path / "r.sqlite")
    try:
        session = httpx.post(f"{server.url}/api/participants", json={"consent": True}).json()
        pid = session["participant_id"]
        page = session["pages"][0]
        listen(httpx, page, server.url)
        httpx.post(f"{server.url}/api/participants/{pid}/pages/0", json=full_page(page)).raise_for_status()
    finally:
        server.stop()
    log = (tmp_path / "r.log").read_text()
    assert "POST /api/participants/<id>/pages/0 200" in log
    assert "GET /api/participants/<id>/audio/<id> 200" in log
    assert pid not in log and page["stimuli"][0]["id"] not in log


def test_a_bot_that_skips_listening_is_refused(bundle, tmp_path):
    """A scripted participant grading everything 100 without fetching audio gets no page stored and no code;
    one that fetches the audio but submits at once is refused by the server's minimum page time."""
    with _client(bundle, tmp_path, min_page_time_s=5.0) as client:
        session = _start(client).json()
        pid = session["participant_id"]
        for page in session["pages"]:
            response = client.post(f"/api/participants/{pid}/pages/{page['index']}",
                                   json=full_page(page, lambda i, sid: 100))
            assert response.status_code == 422 and "no audio of page" in response.json()["detail"]
        listen(client, session["pages"][0])
        fast = client.post(f"/api/participants/{pid}/pages/0", json=full_page(session["pages"][0]))
        assert fast.status_code == 422 and "at least 5 s of listening is required" in fast.json()["detail"]
        assert client.post(f"/api/participants/{pid}/finish").status_code == 409
        assert client.store.counts()["pages"] == 0
    with _client(bundle, tmp_path / "l", min_listening_s=1.5) as client:
        session = _start(client).json()
        page = session["pages"][0]
        listen(client, page)
        body = full_page(page)
        for r in body["ratings"]:
            r["played_s"] = 0.1
        url = f"/api/participants/{session['participant_id']}/pages/0"
        response = client.post(url, json=body)
        assert response.status_code == 422 and "0.6 s of audio played; at least 1.5 s" in response.json()["detail"]
        body["reference_played_s"] = 1.0
        assert client.post(url, json=body).status_code == 200


def test_a_bot_that_fetches_audio_but_does_not_play_it_is_screened_out(bundle, tmp_path):
    """Through the server and its export: the bot passes the server's checks (it fetches the audio) but reports
    what the page measured (nothing played); the analysis's behaviour rule excludes it, the listeners stay."""
    from codecbench.listening_test.analysis import post_screen

    with _client(bundle, tmp_path) as client:
        for played_s in (6.0, 5.0, 7.0, 0.0):
            session = _start(client).json()
            pid = session["participant_id"]
            for page in session["pages"]:
                listen(client, page)
                body = full_page(page, lambda i, sid: 100)  # same grades for all: only the behaviour differs
                for r in body["ratings"]:
                    r["played_s"] = played_s
                assert client.post(f"/api/participants/{pid}/pages/{page['index']}", json=body).status_code == 200
            if played_s == 0:
                bot = pid
        frame = client.store.ratings_frame()
    screening = post_screen(frame, reference="reference", anchor=None)
    assert screening.excluded == (bot,)
    assert "did not listen" in {a.participant_id: a for a in screening.assessors}[bot].reason


def test_pages_file_and_questionnaire(bundle, tmp_path):
    import json

    from codecbench.bench.core.errors import ConfigError
    from codecbench.listening_test.server import load_pages

    bad = tmp_path / "bad.json"
    for content, message in [('{"consnt": "x"}', "unknown key 'consnt'"),
                             ('{"questionnaire": [{"id": "A B", "label": "x", "type": "text"}]}', r"questionnaire\[0\]"),
                             ('{"questionnaire": [{"id": "q", "label": "x", "type": "choice"}]}', "needs a non-empty"),
                             ("{", "cannot read the pages file")]:
        bad.write_text(content)
        with pytest.raises(ConfigError, match=message):
            load_pages(bad)
    good = tmp_path / "pages.json"
    good.write_text(json.dumps({"consent": "ok", "questionnaire": [
        {"id": "hp", "label": "Headphones?", "type": "choice", "options": ["yes", "no"]},
        {"id": "comments", "label": "Comments", "type": "text"}]}))
    with _client(bundle, tmp_path, pages=load_pages(good)) as client:
        assert client.get("/api/test").json()["pages"]["consent"] == "ok"
        session = _start(client).json()
        url = f"/api/participants/{session['participant_id']}/questionnaire"
        assert client.post(url, json={"answers": {"nope": "x"}}).status_code == 422
        assert client.post(url, json={"answers": {"hp": "maybe"}}).status_code == 422
        assert client.post(url, json={"answers": {"comments": "x" * 2001}}).status_code == 422
        assert client.post(url, json={"answers": {"hp": "yes", "comments": "<b>hi</b>"}}).json() == {"status": "stored"}
        assert client.post(url, json={"answers": {"hp": "no"}}).status_code == 409  # first answers kept
        assert client.get(f"/api/participants/{session['participant_id']}").json()["questionnaire_done"] is True


def test_headphone_check_config_and_result(bundle, tmp_path):
    import json

    from codecbench.bench.core.errors import ConfigError
    from codecbench.listening_test.server import load_pages

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"headphone_check": {"trials": 3, "pass": 4}}))
    with pytest.raises(ConfigError, match="'headphone_check' must be"):
        load_pages(bad)
    good = tmp_path / "pages.json"
    good.write_text(json.dumps({"headphone_check": {"trials": 6, "pass": 5}, "calibration": "Set the volume."}))
    pages = load_pages(good)
    assert pages["headphone_check"] == {"trials": 6, "pass": 5, "required": False}
    with _client(bundle, tmp_path, pages=pages) as client:
        session = _start(client).json()
        pid = session["participant_id"]
        url = f"/api/participants/{pid}/screening"
        assert client.post(url, json={"name": "huggins_pitch", "correct": 7, "trials": 6, "passed": True}).status_code == 422
        assert client.post(url, json={"name": "huggins_pitch", "correct": 4, "trials": 6, "passed": False}).json() == {
            "status": "stored"}
        assert client.post(url, json={"name": "huggins_pitch", "correct": 6, "trials": 6, "passed": True}).json() == {
            "status": "duplicate"}  # the first result is kept
        page = session["pages"][1]
        listen(client, page)
        client.post(f"/api/participants/{pid}/pages/1", json=full_page(page)).raise_for_status()
        frame = client.store.ratings_frame()
    assert json.loads(frame["headphone_check_json"].iloc[0])["correct"] == 4


def test_schema_1_database_is_upgraded_in_place(tmp_path):
    """A database written by schema version 1 (the columns before behaviour records) keeps its grades and gains
    the new columns."""
    import json
    import sqlite3

    from codecbench.listening_test.store import SCHEMA_VERSION, RatingsStore

    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript("""
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema_version', '1');
            CREATE TABLE participants (participant_id TEXT PRIMARY KEY, created_utc TEXT NOT NULL, seed INTEGER NOT NULL,
                plan_json TEXT NOT NULL, user_agent TEXT NOT NULL DEFAULT '', completion_code TEXT, finished_utc TEXT);
            CREATE TABLE pages (participant_id TEXT NOT NULL, page_index INTEGER NOT NULL, item_id TEXT NOT NULL,
                is_training INTEGER NOT NULL, submitted_utc TEXT NOT NULL, payload_sha256 TEXT NOT NULL,
                page_duration_s REAL, PRIMARY KEY (participant_id, page_index));
            CREATE TABLE ratings (participant_id TEXT NOT NULL, page_index INTEGER NOT NULL, item_id TEXT NOT NULL,
                condition_id TEXT NOT NULL, condition TEXT NOT NULL, role TEXT NOT NULL, score INTEGER NOT NULL,
                moved INTEGER NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (participant_id, page_index, condition_id));
            INSERT INTO participants VALUES ('p-old-participant-0001', 't', 1, '[]', 'ua', 'CB-OLD', 't2');
            INSERT INTO pages VALUES ('p-old-participant-0001', 1, 'i', 0, 't', 'd', 3.0);
            INSERT INTO ratings VALUES ('p-old-participant-0001', 1, 'i', 's1', 'opus', 'test', 55, 1, 0);
        """)
    conn.close()
    frame = RatingsStore(db).ratings_frame()
    assert list(frame["score"]) == [55] and list(frame["completion_code"]) == ["CB-OLD"]
    assert frame["played_s"].isna().all()
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == SCHEMA_VERSION
        history = conn.execute("SELECT participant_id, page_index, revision, ratings_json FROM page_revisions").fetchall()
    conn.close()
    assert [h[:3] for h in history] == [("p-old-participant-0001", 1, 1)]  # the stored page became its revision 1
    assert [g["score"] for g in json.loads(history[0][3])] == [55] and list(frame["revision"]) == [1]
