"""The MUSHRA page in a real headless Chromium (Debian's), driven by Playwright against a real uvicorn server:
consent, calibration, headphone check, play after a click, waveform looping, rate with the keyboard, submit, reload
mid-test and resume, Previous (change an earlier page: a new revision, the first kept), questionnaire, finish, the
researcher's results page; desktop and phone screenshots."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from codecbench.listening_test.bundle import build_bundle
from mushra_support import ServerProcess, write_run

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium absent (apt-get install chromium)"),
]
KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "-", "="]
SCREENSHOTS = os.environ.get("CODECBENCH_SCREENSHOT_DIR")  # set to keep the screenshots (docs/img)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    bundle = build_bundle(write_run(root, n_items=2, duration_s=2.0), root / "bundle", title="Codec listening test")
    pages = root / "pages.json"
    pages.write_text(json.dumps({
        "consent": "I agree <b>not bold</b> & consent.",
        "instructions": ["First paragraph <img src=x onerror=alert(1)>.", "Second paragraph."],
        "calibration": "Set a comfortable volume, then keep it.",
        "headphone_check": {"trials": 2, "pass": 2, "required": True},
        "questionnaire": [{"id": "headphones", "label": "Which <i>headphones</i>?", "type": "choice",
                           "options": ["closed", "open", "none"]},
                          {"id": "comments", "label": "Comments", "type": "text"}],
    }))
    srv = ServerProcess(bundle, root / "ratings.sqlite", extra_args=(
        "--participants-per-minute-per-client", "1000", "--pages", str(pages)))
    yield srv, root / "ratings.sqlite"
    srv.stop()


def _shot(page, tmp_path, name):
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def _pass_setup_pages(page):
    """Volume calibration (play, stop, continue) and the Huggins-pitch headphone check (answered right)."""
    page.wait_for_selector("#screen-calibration:not([hidden])")
    assert page.inner_text("#calibration-text") == "Set a comfortable volume, then keep it."
    page.click("#calibration-play")
    page.wait_for_timeout(200)
    page.click("#calibration-play")
    page.click("#calibration-done")
    page.wait_for_selector("#screen-headphones:not([hidden])")
    for _ in range(2):
        page.click("#huggins-play")
        page.wait_for_selector(".huggins-answer:not([disabled])", timeout=10_000)
        target = page.evaluate("window.mushra.huggins.target")
        page.click(f".huggins-answer[data-answer='{target}']")


def _rate_page(page, state_check=True):
    """Select every stimulus with its key and grade it with arrow keys: first 100, i-th 50 - 10 i."""
    n = page.evaluate("window.mushra.page.stimuli.length")
    grades = {}
    for i in range(n):
        page.keyboard.press(KEYS[i])
        sid = page.evaluate("window.mushra.player.active")
        assert sid == page.evaluate(f"window.mushra.page.stimuli[{i}].id")
        if state_check:  # the playing condition's column is highlighted
            active = page.eval_on_selector_all(".condition", "els => els.map(e => e.classList.contains('active-col'))")
            assert active == [j == i for j in range(n)]
        if i == 0:
            for _ in range(5):
                page.keyboard.press("Shift+ArrowUp")
        else:
            for _ in range(i):
                page.keyboard.press("Shift+ArrowDown")
        grades[sid] = 100 if i == 0 else 50 - 10 * i
    return grades


def test_whole_test_in_chromium(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    srv, db = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"],
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 640})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(srv.url + "/")
            page.wait_for_selector("#screen-welcome:not([hidden])")
            assert page.evaluate("window.mushra.ctx") is None  # no audio before a user gesture
            # configured pages, shown as text (no element injected), consent required
            assert page.inner_text("#consent-text") == "I agree <b>not bold</b> & consent."
            assert "<img src=x" in page.inner_text("#instructions") and page.query_selector("#instructions img") is None
            assert page.is_disabled("#start")
            page.check("#consent")
            _shot(page, tmp_path, "mushra-welcome")
            page.click("#start")  # the gesture
            _pass_setup_pages(page)
            page.wait_for_selector("#screen-trial:not([hidden])")
            assert page.evaluate("window.mushra.ctx.state") == "running"
            assert page.is_visible("#training-banner")
            assert page.inner_text("#progress-text") == "Page 1 of 3"
            # sliders start unrated; Next refuses
            assert page.eval_on_selector_all(".condition input", "els => els.every(e => e.classList.contains('unrated'))")
            assert page.is_disabled("#next")
            page.click("#ref-button")  # play the reference
            page.wait_for_timeout(300)
            assert page.evaluate("window.mushra.player.playing") is True
            # waveform drawn; drag from 25 % to 75 % loops that region, with a faded, gapless change
            assert page.evaluate("(() => { const c = document.getElementById('waveform'); const d = c.getContext('2d')"
                                 ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length;"
                                 " i += 4) n += d[i] > 0; return n; })()") > 1000
            box = page.query_selector(".timeline .track").bounding_box()
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + 0.25 * box["width"], y)
            page.mouse.down()
            page.mouse.move(box["x"] + 0.75 * box["width"], y, steps=5)
            page.mouse.up()
            start_s, end_s = page.evaluate("[window.mushra.player.loopStart, window.mushra.player.loopEnd]")
            assert start_s == pytest.approx(0.5, abs=0.05) and end_s == pytest.approx(1.5, abs=0.05)
            change = [e for e in page.evaluate("window.mushra.player.events") if e["type"] == "loop-change"][-1]
            assert change["fade_s"] == 0.005 and change["gap_s"] < 0.001
            assert page.evaluate("window.mushra.player.playing") is True
            page.wait_for_timeout(300)
            page.keyboard.press("b")  # loop end at the playhead (inside 0.5-1.5 s)
            end_b = page.evaluate("window.mushra.player.loopEnd")
            assert 0.5 < end_b <= 1.5 + 1e-6 and page.evaluate("window.mushra.loopChanges") == 2
            page.keyboard.press("a")  # loop start at the playhead
            assert page.evaluate("window.mushra.loopChanges") == 3
            page.click("#loop-start")  # back to the whole excerpt via the numeric controls
            page.evaluate("window.mushra.player.setLoop(0, window.mushra.player.duration)")
            _rate_page(page)
            events = page.evaluate("window.mushra.player.events")
            switches = [e for e in events if e["type"] == "switch"]
            assert len(switches) == 6 and all(e["fade_s"] == 0.005 for e in switches)
            assert any(e["type"] == "loop" for e in events)
            assert not page.is_disabled("#next")
            page.keyboard.press("Enter")  # submit the training page
            page.wait_for_function("() => window.mushra.page && window.mushra.page.index === 1")
            assert not page.is_visible("#training-banner")
            # grade half of page 1, then reload mid-test
            first = page.evaluate("window.mushra.page.stimuli[0].id")
            page.keyboard.press("1")
            for _ in range(5):
                page.keyboard.press("Shift+ArrowUp")
            page.click("#play-button")
            page.reload()
            page.wait_for_selector("#screen-resume:not([hidden])")
            page.click("#resume")
            page.wait_for_selector("#screen-trial:not([hidden])")
            assert page.evaluate("window.mushra.page.index") == 1  # the training page is not repeated
            assert page.evaluate(f"window.mushra.ratings['{first}'].score") == 100  # draft kept
            assert page.inner_text("#progress-text") == "Page 2 of 3"
            grades = {1: _rate_page(page)}
            page.wait_for_timeout(200)
            _shot(page, tmp_path, "mushra-trial")
            page.click("#next")
            page.wait_for_function("() => window.mushra.page && window.mushra.page.index === 2")
            # Previous: back to page 1 with its stored grades shown again; one changed and sent as revision 2
            assert not page.is_disabled("#previous")
            page.click("#previous")
            page.wait_for_function("() => window.mushra.page && window.mushra.page.index === 1")
            page.wait_for_selector("#screen-trial:not([hidden])")
            assert page.inner_text("#progress-text") == "Page 2 of 3"
            shown = page.evaluate("Object.fromEntries(Object.entries(window.mushra.ratings).map(([k, v]) => [k, v.score]))")
            assert shown == grades[1]
            sliders = page.eval_on_selector_all(".condition", "els => Object.fromEntries(els.map(e => "
                                                "[e.dataset.stimulus, Number(e.querySelector('input').value)]))")
            assert sliders == grades[1]
            first_grades = dict(grades[1])
            second = page.evaluate("window.mushra.page.stimuli[1].id")
            page.keyboard.press("2")
            page.keyboard.press("Shift+ArrowUp")
            grades[1][second] += 10
            page.wait_for_timeout(200)
            _shot(page, tmp_path, "mushra-previous")
            page.click("#next")
            page.wait_for_function("() => window.mushra.page && window.mushra.page.index === 2")
            assert page.evaluate("window.mushra.session.revisions") == [1, 2, 0]
            # clicking the middle of an UNRATED slider registers 50 (its hidden value was 50 already)
            sid0 = page.evaluate("window.mushra.page.stimuli[0].id")
            assert page.evaluate(f"window.mushra.ratings['{sid0}']") is None
            slider = page.query_selector_all(".condition input")[0].bounding_box()
            page.mouse.click(slider["x"] + slider["width"] / 2, slider["y"] + slider["height"] / 2)
            assert page.evaluate(f"window.mushra.ratings['{sid0}'].score") == pytest.approx(50, abs=2)
            assert page.evaluate("window.mushra.player.active") == sid0  # the click also selects that version
            grades[2] = _rate_page(page)
            page.click("#next")
            page.wait_for_selector("#screen-questions:not([hidden])")  # the end questionnaire
            page.click("#questions-back")  # Previous from the questionnaire: the last page, unchanged, and back
            page.wait_for_selector("#screen-trial:not([hidden])")
            assert page.evaluate("window.mushra.page.index") == 2 and not page.is_disabled("#next")
            page.click("#next")  # nothing changed: nothing is sent, straight back to the questionnaire
            page.wait_for_selector("#screen-questions:not([hidden])")
            assert page.inner_text("#questions label") == "Which <i>headphones</i>?"
            assert page.query_selector("#questions i") is None
            page.select_option("#q-headphones", "closed")
            page.fill("#q-comments", "<script>alert(1)</script> fine")
            _shot(page, tmp_path, "mushra-questions")
            page.click("#send-questions")
            page.wait_for_selector("#screen-done:not([hidden])")
            code = page.inner_text("#completion-code")
            assert code.startswith("CB-")
            _shot(page, tmp_path, "mushra-done")
            page.reload()  # a finished participant sees the finished page with the same code, not "welcome back"
            page.wait_for_selector("#screen-done:not([hidden])")
            assert page.inner_text("#completion-code") == code
            assert errors == []
            # the researcher's results page, behind the admin token, with the questionnaire answer escaped
            admin = browser.new_page(viewport={"width": 1100, "height": 900})
            assert admin.goto(srv.url + "/api/admin/report.html").status == 401
            admin.set_extra_http_headers({"Authorization": "Bearer " + "t" * 32})
            response = admin.goto(srv.url + "/api/admin/report.html")
            assert response.status == 200 and admin.inner_text("h1") == "MUSHRA results"
            assert "<script>alert(1)</script> fine" in admin.inner_text("body") and admin.query_selector("body script") is None
            admin.set_viewport_size({"width": 1100, "height": admin.evaluate("document.body.scrollHeight") + 40})
            _shot(admin, tmp_path, "mushra-report")
            # phone: 390 px wide, every slider of a trial on screen at once
            phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                     has_touch=True)
            phone.goto(srv.url + "/")
            phone.wait_for_selector("#screen-welcome:not([hidden])")
            phone.check("#consent")
            phone.click("#start")
            _pass_setup_pages(phone)
            phone.wait_for_selector("#screen-trial:not([hidden])")
            phone.click("#ref-button")
            _rate_page(phone, state_check=False)
            boxes = [phone.query_selector_all(".condition input")[i].bounding_box() for i in range(6)]
            assert all(b["x"] >= 0 and b["x"] + b["width"] <= 390 and b["y"] + b["height"] <= 844 for b in boxes)
            assert phone.evaluate("document.documentElement.scrollWidth") <= 390
            _shot(phone, tmp_path, "mushra-phone")
        finally:
            browser.close()
    with sqlite3.connect(db) as conn:
        first_pid = conn.execute("SELECT participant_id FROM participants WHERE completion_code IS NOT NULL").fetchone()[0]
        plan = json.loads(conn.execute("SELECT plan_json FROM participants WHERE participant_id = ?",
                                       (first_pid,)).fetchone()[0])
        to_audio_id = {(pg["index"], sid): aid for pg in plan for sid, aid in pg["audio_ids"].items()}
        rows = [(p, to_audio_id[(p, sid)], s, m) for p, sid, s, m in
                conn.execute("SELECT page_index, condition_id, score, moved FROM ratings WHERE participant_id = ?",
                             (first_pid,)).fetchall()]
        played = conn.execute("SELECT played_s, slider_moves FROM ratings WHERE participant_id = ?",
                              (first_pid,)).fetchall()
        fetched = conn.execute("SELECT audio_fetched FROM pages WHERE participant_id = ?", (first_pid,)).fetchall()
        assert code in {r[0] for r in conn.execute("SELECT completion_code FROM participants")}
        answers = json.loads(conn.execute("SELECT answers_json FROM questionnaire").fetchone()[0])
        check = json.loads(conn.execute("SELECT result_json FROM screenings WHERE participant_id = ?",
                                        (first_pid,)).fetchone()[0])
        assert check == {"name": "huggins_pitch", "correct": 2, "trials": 2, "passed": True}
        assert answers == {"headphones": "closed", "comments": "<script>alert(1)</script> fine"}
        history = conn.execute("SELECT page_index, revision, ratings_json FROM page_revisions WHERE participant_id = ? "
                               "ORDER BY page_index, revision", (first_pid,)).fetchall()
    conn.close()
    # the page's behaviour record: every stimulus was heard (it was selected while playing) and graded by keys
    assert all(p > 0 and m >= 1 for p, m in played), played
    assert all(n == 7 for (n,) in fetched)  # the server delivered the reference and all 6 stimuli per page
    assert {(p, sid): s for p, sid, s, _ in rows} == {(p, sid): s for p, g in grades.items() for sid, s in g.items()}
    assert all(moved == 1 for *_, moved in rows)
    # every submission is kept: page 1 twice (the first grades intact), the analysis reads the latest (ratings above)
    assert [(p, r) for p, r, _ in history] == [(0, 1), (1, 1), (1, 2), (2, 1)]
    revisions = {r: {to_audio_id[(1, g["condition_id"])]: g["score"] for g in json.loads(blob)}
                 for p, r, blob in history if p == 1}
    assert revisions == {1: first_grades, 2: grades[1]} and first_grades != grades[1]
