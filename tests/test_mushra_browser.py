"""The MUSHRA page in a real headless Chromium (Debian's), driven by Playwright against a real uvicorn server:
load, play after a click, rate with the keyboard, submit, reload mid-test and resume, finish."""

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
    srv = ServerProcess(bundle, root / "ratings.sqlite")
    yield srv, root / "ratings.sqlite"
    srv.stop()


def _shot(page, tmp_path, name):
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def _rate_page(page, state_check=True):
    """Select every stimulus with its key and grade it with arrow keys: first 100, i-th 50 - 10 i."""
    n = page.evaluate("window.mushra.page.stimuli.length")
    grades = {}
    for i in range(n):
        page.keyboard.press(KEYS[i])
        sid = page.evaluate("window.mushra.player.active")
        assert sid == page.evaluate(f"window.mushra.page.stimuli[{i}].id")
        if state_check:  # only the playing condition's slider is active
            enabled = page.eval_on_selector_all(".condition input", "els => els.map(e => !e.disabled)")
            assert enabled == [j == i for j in range(n)]
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
            _shot(page, tmp_path, "mushra-welcome")
            page.click("#start")  # the gesture
            page.wait_for_selector("#screen-trial:not([hidden])")
            assert page.evaluate("window.mushra.ctx.state") == "running"
            assert page.is_visible("#training-banner")
            assert page.inner_text("#progress-text") == "Page 1 of 3"
            # sliders start unrated and disabled; Next refuses
            assert page.eval_on_selector_all(".condition input", "els => els.every(e => e.disabled && "
                                             "e.classList.contains('unrated'))")
            assert page.is_disabled("#next")
            page.click("#ref-button")  # play the reference
            page.wait_for_timeout(300)
            assert page.evaluate("window.mushra.player.playing") is True
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
            grades[2] = _rate_page(page)
            page.click("#next")
            page.wait_for_selector("#screen-done:not([hidden])")
            code = page.inner_text("#completion-code")
            assert code.startswith("CB-")
            _shot(page, tmp_path, "mushra-done")
            page.reload()  # a finished participant sees the finished page with the same code, not "welcome back"
            page.wait_for_selector("#screen-done:not([hidden])")
            assert page.inner_text("#completion-code") == code
            assert errors == []
        finally:
            browser.close()
    with sqlite3.connect(db) as conn:
        plan = json.loads(conn.execute("SELECT plan_json FROM participants").fetchone()[0])
        to_audio_id = {(pg["index"], sid): aid for pg in plan for sid, aid in pg["audio_ids"].items()}
        rows = [(p, to_audio_id[(p, sid)], s, m) for p, sid, s, m in
                conn.execute("SELECT page_index, condition_id, score, moved FROM ratings").fetchall()]
        played = conn.execute("SELECT played_s, slider_moves FROM ratings").fetchall()
        fetched = conn.execute("SELECT audio_fetched FROM pages").fetchall()
        assert conn.execute("SELECT completion_code FROM participants").fetchone()[0] == code
    conn.close()
    # the page's behaviour record: every stimulus was heard (it was selected while playing) and graded by keys
    assert all(p > 0 and m >= 1 for p, m in played), played
    assert all(n == 7 for (n,) in fetched)  # the server delivered the reference and all 6 stimuli per page
    assert {(p, sid): s for p, sid, s, _ in rows} == {(p, sid): s for p, g in grades.items() for sid, s in g.items()}
    assert all(moved == 1 for *_, moved in rows)
