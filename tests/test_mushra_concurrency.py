"""The MUSHRA server as a real uvicorn process on 127.0.0.1: concurrent participants, and kill -9 mid-test."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
from codecbench.listening_test.bundle import build_bundle
from mushra_support import ServerProcess, full_page, write_run

pytestmark = pytest.mark.slow
httpx = pytest.importorskip("httpx")
N_PARTICIPANTS = 60
TOKEN = "t" * 32


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("conc")
    return build_bundle(write_run(root, n_items=2, duration_s=1.0), root / "bundle")


def _scores(participant: int, page: int):
    return lambda i, sid: 100 if i == 0 else (participant * 7 + page * 13 + i) % 100


def _audio_ids(conn) -> dict:
    """(participant, page, bundle stimulus id) -> the participant's random audio id (what the page submits)."""
    out = {}
    for pid, plan_json in conn.execute("SELECT participant_id, plan_json FROM participants"):
        for page in json.loads(plan_json):
            out.update({(pid, page["index"], sid): aid for sid, aid in page["audio_ids"].items()})
    return out


def _participant(url: str, number: int, client) -> dict:
    session = client.post(f"{url}/api/participants", json={"consent": True}).raise_for_status().json()
    pid = session["participant_id"]
    sent = {}
    for page in session["pages"]:
        client.get(f"{url}/{page['reference']}").raise_for_status()  # the server refuses pages without audio
        body = full_page(page, _scores(number, page["index"]))
        for _ in range(2):  # every page submitted twice: the retry must not duplicate
            r = client.post(f"{url}/api/participants/{pid}/pages/{page['index']}", json=body)
            assert r.status_code == 200, r.text
        sent[page["index"]] = {x["stimulus_id"]: x["score"] for x in body["ratings"]}
    return {"pid": pid, "sent": sent, "training": session["pages"][0]["index"]}


def test_concurrent_participants_every_rating_stored_exactly_once(bundle, tmp_path):
    db = tmp_path / "ratings.sqlite"
    server = ServerProcess(bundle, db, token=TOKEN)
    try:
        started = time.monotonic()
        limits = httpx.Limits(max_connections=N_PARTICIPANTS)
        with httpx.Client(timeout=30.0, limits=limits) as client, ThreadPoolExecutor(N_PARTICIPANTS) as pool:
            barrier = threading.Barrier(N_PARTICIPANTS)

            def run(number):
                barrier.wait(timeout=30)  # all participants start together
                return _participant(server.url, number, client)

            futures = [pool.submit(run, n) for n in range(N_PARTICIPANTS)]
            done, pending = wait(futures, timeout=90)
            assert not pending, "participants did not finish within 90 s"
            results = [f.result() for f in done]
        elapsed_s = time.monotonic() - started
        export = httpx.get(f"{server.url}/api/admin/export.csv", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        server.stop()
    print(f"{N_PARTICIPANTS} participants x 3 pages x 2 submits in {elapsed_s:.1f} s")
    assert export.status_code == 200
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM participants").fetchone()[0] == N_PARTICIPANTS
        assert conn.execute("SELECT COUNT(*) FROM pages").fetchone()[0] == N_PARTICIPANTS * 3
        rows = conn.execute("SELECT participant_id, page_index, condition_id, score FROM ratings").fetchall()
        to_audio_id = _audio_ids(conn)
    conn.close()
    rows = [(p, page, to_audio_id[(p, page, sid)], score) for p, page, sid, score in rows]
    assert len(rows) == N_PARTICIPANTS * 2 * 6  # training grades are discarded
    stored = {(p, page, sid): score for p, page, sid, score in rows}
    assert len(stored) == len(rows)  # no (participant, page, stimulus) twice
    expected = {(r["pid"], page, sid): score for r in results for page, grades in r["sent"].items()
                if page != r["training"] for sid, score in grades.items()}
    assert stored == expected
    assert export.text.count("\n") == len(rows) + 1


def test_kill_9_mid_test_loses_no_acknowledged_page(bundle, tmp_path):
    """Also with Previous: every participant changes page 1 right after submitting it (revision 2); after the
    kill, every acknowledged revision is in the history with its grades, the first included."""
    db = tmp_path / "ratings.sqlite"
    server = ServerProcess(bundle, db, token=TOKEN)
    acknowledged: list[tuple[str, int, dict]] = []
    revised: list[tuple[str, int, int, dict]] = []  # (participant, page, revision, body) acknowledged
    lock = threading.Lock()
    stop = threading.Event()

    def participant(number):
        with httpx.Client(timeout=5.0) as client:
            try:
                session = client.post(f"{server.url}/api/participants", json={"consent": True}).raise_for_status().json()
                for page in session["pages"]:
                    if stop.is_set():
                        return
                    client.get(f"{server.url}/{page['reference']}").raise_for_status()
                    body = full_page(page, _scores(number, page["index"]))
                    r = client.post(f"{server.url}/api/participants/{session['participant_id']}/pages/"
                                    f"{page['index']}", json=body)
                    if r.status_code == 200:
                        with lock:
                            acknowledged.append((session["participant_id"], page["index"], body))
                            revised.append((session["participant_id"], page["index"], 1, body))
                    if r.status_code == 200 and page["index"] == 1:  # Previous: change page 1 at once
                        again = dict(full_page(page, _scores(number + 500, 1)), replaces_revision=1)
                        r2 = client.post(f"{server.url}/api/participants/{session['participant_id']}/pages/1",
                                         json=again)
                        if r2.status_code == 200:
                            assert r2.json()["revision"] == 2
                            with lock:
                                revised.append((session["participant_id"], 1, 2, again))
                    time.sleep(0.01)
            except httpx.HTTPError:
                return  # the server died under us: this page was never acknowledged

    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(participant, n) for n in range(40)]
        deadline = time.monotonic() + 30
        while ((len(acknowledged) < 25 or sum(1 for *_, rev, _ in revised if rev == 2) < 3)
               and time.monotonic() < deadline):
            time.sleep(0.005)
        server.kill()  # SIGKILL while other submits are in flight
        with lock:
            before_kill = list(acknowledged)
        stop.set()
        wait(futures, timeout=30)
    assert len(before_kill) >= 25
    restarted = ServerProcess(bundle, db, token=TOKEN)
    try:
        for pid, page_index, _body in acknowledged:
            session = httpx.get(f"{restarted.url}/api/participants/{pid}").json()
            assert page_index in session["done_pages"]
        export = httpx.get(f"{restarted.url}/api/admin/export.csv", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        restarted.stop()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        to_audio_id = _audio_ids(conn)
        stored = {(p, page, to_audio_id[(p, page, sid)]): s for p, page, sid, s in
                  conn.execute("SELECT participant_id, page_index, condition_id, score FROM ratings")}
        pages = set(conn.execute("SELECT participant_id, page_index FROM pages").fetchall())
        history = {(p, page, rev): {g["condition_id"]: g["score"] for g in json.loads(blob)} for p, page, rev, blob in
                   conn.execute("SELECT participant_id, page_index, revision, ratings_json FROM page_revisions")}
        latest = dict(((p, page), rev) for p, page, rev in
                      conn.execute("SELECT participant_id, page_index, revision FROM pages"))
    conn.close()
    assert sum(1 for *_, rev, _ in revised if rev == 2) >= 3
    for pid, page_index, revision, body in revised:  # every acknowledged revision kept, with its grades
        assert history[(pid, page_index, revision)] == {
            sid: rating["score"] for rating in body["ratings"] for (p, pg, sid), aid in to_audio_id.items()
            if (p, pg) == (pid, page_index) and aid == rating["stimulus_id"]}
    for (pid, page_index), revision in latest.items():  # the ratings table holds the page's latest revision
        if page_index != 0:
            mine = {key[2]: score for key, score in stored.items() if key[:2] == (pid, page_index)}
            inverse = {aid: sid for (p, pg, sid), aid in to_audio_id.items() if (p, pg) == (pid, page_index)}
            assert {inverse[aid]: score for aid, score in mine.items()} == history[(pid, page_index, revision)]
    changed = {(pid, page) for pid, page, rev, _ in revised if rev == 2}
    for pid, page_index, body in acknowledged:
        assert (pid, page_index) in pages
        if page_index != 0 and (pid, page_index) not in changed and latest[(pid, page_index)] == 1:
            for rating in body["ratings"]:
                assert stored[(pid, page_index, rating["stimulus_id"])] == rating["score"]
    # no half-written page: every stored non-training page has all its 6 grades
    for pid, page_index in pages:
        if page_index != 0:
            assert sum(1 for key in stored if key[:2] == (pid, page_index)) == 6
    assert export.status_code == 200
