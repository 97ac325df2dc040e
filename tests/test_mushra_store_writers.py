"""The ratings store's writers: threads of one process queue on its write lock, not on SQLite's busy handler."""

from __future__ import annotations

import threading

from codecbench.listening_test import store as store_mod
from codecbench.listening_test.store import Rating, RatingsStore


def _page(store: RatingsStore, participant: str, page: int) -> str:
    ratings = [Rating(f"c{i}", f"cond{i}", "condition", 50 + i, True, i, 1.0, 1) for i in range(6)]
    return store.submit_page(participant, page, "item", False, ratings, f"digest-{participant}-{page}").status


def test_every_store_of_a_file_shares_one_write_lock(tmp_path):
    a, b = RatingsStore(tmp_path / "r.sqlite"), RatingsStore(tmp_path / "sub" / ".." / "r.sqlite")
    assert store_mod._write_lock(a.path) is store_mod._write_lock(b.path)
    assert store_mod._write_lock(a.path) is not store_mod._write_lock(tmp_path / "other.sqlite")


def test_concurrent_writers_never_meet_sqlite_lock_contention(tmp_path):
    """32 threads, each with its own connection and a 1 ms busy timeout, write pages, participants, fetches and
    completion codes at once: without the process's write lock SQLite answers `database is locked` within 1 ms of
    contention; with it every write is stored exactly once."""
    store = RatingsStore(tmp_path / "r.sqlite", busy_timeout_s=0.001)
    errors: list[BaseException] = []
    statuses: list[str] = []
    barrier = threading.Barrier(32)

    def participant(number: int) -> None:
        try:
            barrier.wait()
            pid = f"p{number:02d}"
            store.create_participant(pid, number, [{"index": page} for page in range(4)])
            for page in range(4):
                store.record_fetch(pid, page, f"a{page}", 1.0)
                statuses.append(_page(store, pid, page))
            store.save_questionnaire(pid, "{}")
            store.finish(pid, f"CB-{number}")
        except BaseException as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=participant, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert statuses.count("stored") == 32 * 4
    counts = store.counts()
    assert counts["participants"] == 32 and counts["ratings"] == 32 * 4 * 6
