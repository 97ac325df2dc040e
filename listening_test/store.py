"""The ratings database: SQLite in WAL mode, one transaction per submitted page, idempotent on (participant, page).

Every statement is parameterised. The schema is created with ``CREATE TABLE IF NOT EXISTS`` and never dropped;
a database written by an unknown schema version is refused with the file named.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL``: a page whose submit returned is on disk, whatever
happens to the server process afterwards (kill -9 included). Audio-delivery records are written with
``synchronous=NORMAL`` (no fsync of their own; the next page commit syncs them): losing one on a power cut only
loosens a quality check.

Connections: one per thread, kept open (the server's worker threads reuse theirs). Profiled before this: a
short-lived connection per call spent 10 of 24 ms of a page submit in ``close()`` (the last connection to a WAL
database checkpoints and deletes the WAL) and 9 ms per audio-delivery record.

Tables:

- ``participants``: one row per participant (opaque id, seed, randomised page plan, completion code);
- ``pages``: one row per submitted page, primary key (participant_id, page_index); training pages are recorded
  here (so a reload resumes after them) but their grades are not stored;
- ``ratings``: one row per (participant, page, condition) of a non-training page, with the seconds the page says
  that stimulus was played (``played_s``) and how often its slider moved (``slider_moves``);
- ``audio_fetches``: one row per (participant, page, audio id) the server delivered, with the count and the first
  time: the server's own evidence that a page's audio was fetched before it was graded;
- ``page_revisions``: EVERY accepted submission of a page (revision 1 is the first, 2 the first change made after
  going back to it with Previous, ...), with its digest, behaviour record and grades as submitted
  (``ratings_json``); written in the same transaction as the page, never updated or deleted. ``pages`` and
  ``ratings`` hold the latest revision (what the analysis uses); ``pages.revision`` says which;
- ``attention``: the outcome of each attention-check page (latest revision): the score given to its degraded
  stimulus, the maximum allowed, passed or not. The grades of an attention page are not in ``ratings``.

File mode: a new database is created with mode 0600 (owner read/write only); SQLite gives its ``-wal`` and
``-shm`` files the same mode. Schema version 1 and 2 databases are upgraded in place (columns and tables added,
each stored page copied into ``page_revisions`` as its revision 1; nothing dropped).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codecbench.bench.core.errors import CodecbenchError

SCHEMA_VERSION = "3"

EXPORT_COLUMNS = (
    "participant_id",
    "page_index",
    "revision",
    "item_id",
    "condition",
    "condition_id",
    "role",
    "score",
    "moved",
    "position",
    "submitted_utc",
    "page_duration_s",
    "played_s",
    "slider_moves",
    "server_page_time_s",
    "audio_fetched",
    "user_agent",
    "created_utc",
    "finished_utc",
    "completion_code",
    "questionnaire_json",
    "headphone_check_json",
    "attention_checks",
    "attention_failed",
)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS participants (
        participant_id TEXT PRIMARY KEY,
        created_utc TEXT NOT NULL,
        seed INTEGER NOT NULL,
        plan_json TEXT NOT NULL,
        user_agent TEXT NOT NULL DEFAULT '',
        completion_code TEXT,
        finished_utc TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS pages (
        participant_id TEXT NOT NULL REFERENCES participants(participant_id),
        page_index INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        is_training INTEGER NOT NULL,
        submitted_utc TEXT NOT NULL,
        payload_sha256 TEXT NOT NULL,
        page_duration_s REAL,
        server_page_time_s REAL,
        audio_fetched INTEGER,
        behaviour_json TEXT,
        revision INTEGER NOT NULL DEFAULT 1,
        is_attention INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (participant_id, page_index)
    )""",
    """CREATE TABLE IF NOT EXISTS page_revisions (
        participant_id TEXT NOT NULL,
        page_index INTEGER NOT NULL,
        revision INTEGER NOT NULL,
        submitted_utc TEXT NOT NULL,
        payload_sha256 TEXT NOT NULL,
        page_duration_s REAL,
        server_page_time_s REAL,
        audio_fetched INTEGER,
        behaviour_json TEXT,
        ratings_json TEXT NOT NULL,
        PRIMARY KEY (participant_id, page_index, revision)
    )""",
    """CREATE TABLE IF NOT EXISTS attention (
        participant_id TEXT NOT NULL,
        page_index INTEGER NOT NULL,
        revision INTEGER NOT NULL,
        score INTEGER NOT NULL,
        max_score INTEGER NOT NULL,
        passed INTEGER NOT NULL,
        PRIMARY KEY (participant_id, page_index)
    )""",
    """CREATE TABLE IF NOT EXISTS ratings (
        participant_id TEXT NOT NULL,
        page_index INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        condition_id TEXT NOT NULL,
        condition TEXT NOT NULL,
        role TEXT NOT NULL,
        score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 100),
        moved INTEGER NOT NULL,
        position INTEGER NOT NULL,
        played_s REAL,
        slider_moves INTEGER,
        PRIMARY KEY (participant_id, page_index, condition_id),
        FOREIGN KEY (participant_id, page_index) REFERENCES pages(participant_id, page_index)
    )""",
    """CREATE TABLE IF NOT EXISTS audio_fetches (
        participant_id TEXT NOT NULL,
        page_index INTEGER NOT NULL,
        audio_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        first_utc TEXT NOT NULL,
        first_unix_s REAL NOT NULL,
        PRIMARY KEY (participant_id, page_index, audio_id)
    )""",
    """CREATE TABLE IF NOT EXISTS screenings (
        participant_id TEXT NOT NULL REFERENCES participants(participant_id),
        name TEXT NOT NULL,
        submitted_utc TEXT NOT NULL,
        result_json TEXT NOT NULL,
        PRIMARY KEY (participant_id, name)
    )""",
    """CREATE TABLE IF NOT EXISTS questionnaire (
        participant_id TEXT PRIMARY KEY REFERENCES participants(participant_id),
        submitted_utc TEXT NOT NULL,
        answers_json TEXT NOT NULL
    )""",
)
_UPGRADE_1_TO_2 = (
    "ALTER TABLE pages ADD COLUMN server_page_time_s REAL",
    "ALTER TABLE pages ADD COLUMN audio_fetched INTEGER",
    "ALTER TABLE pages ADD COLUMN behaviour_json TEXT",
    "ALTER TABLE ratings ADD COLUMN played_s REAL",
    "ALTER TABLE ratings ADD COLUMN slider_moves INTEGER",
)
_UPGRADE_2_TO_3 = (
    "ALTER TABLE pages ADD COLUMN revision INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE pages ADD COLUMN is_attention INTEGER NOT NULL DEFAULT 0",
)
HISTORY_COLUMNS = ("participant_id", "page_index", "revision", "submitted_utc", "payload_sha256", "page_duration_s",
                   "server_page_time_s", "audio_fetched", "behaviour_json", "ratings_json")


class StoreError(CodecbenchError):
    """The ratings database cannot be used (unknown schema version, not a codecbench ratings file)."""


@dataclass(frozen=True)
class Rating:
    """One grade of one condition on one page, as the server validated it."""

    condition_id: str
    condition: str
    role: str
    score: int
    moved: bool
    position: int
    played_s: float | None = None
    slider_moves: int | None = None


@dataclass(frozen=True)
class SubmitResult:
    """``stored``: this call wrote the page (as ``revision``); ``duplicate``: the same payload is the page's latest
    revision already; ``conflict``: already stored with a different payload and the call did not name the latest
    revision as the one it replaces (nothing changed); ``final``: the participant has finished, pages are final."""

    status: str
    revision: int = 0


@dataclass(frozen=True)
class AttentionOutcome:
    """What an attention-check page's grades say: the score of its degraded stimulus against the maximum allowed."""

    score: int
    max_score: int

    @property
    def passed(self) -> bool:
        return self.score <= self.max_score


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def payload_digest(payload: Any) -> str:
    """sha256 of the canonical JSON of a submitted page (for telling a retry from a conflicting resubmit)."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class RatingsStore:
    """The ratings database at ``path`` (created with its schema on first use; existing data is never dropped)."""

    def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # owner-only from the first byte (no window with a world-readable file)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with contextlib.closing(_open(self.path, busy_timeout_s)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            has_meta = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is not None
            old = (conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() if has_meta else None)
            if old is not None and old[0] in ("1", "2"):
                conn.execute("BEGIN IMMEDIATE")
                for statement in (_UPGRADE_1_TO_2 if old[0] == "1" else ()) + _UPGRADE_2_TO_3:
                    conn.execute(statement)
                for statement in _SCHEMA:
                    conn.execute(statement)
                _backfill_revisions(conn)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
                conn.execute("COMMIT")
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", ("schema_version", SCHEMA_VERSION))
            version = conn.execute("SELECT value FROM meta WHERE key = ?", ("schema_version",)).fetchone()[0]
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: ratings database schema version {version!r} is not supported "
                f"(this codecbench reads version {SCHEMA_VERSION!r})"
            )

    # -- connections ------------------------------------------------------------------------------------------
    def _connect(self) -> _Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _open(self.path, self.busy_timeout_s)
        return _Connection(conn)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """The calling thread's connection, holding this process's write lock for the database file: threads of
        one server queue on it and wake the moment the writer before them commits, instead of SQLite's busy
        handler, which polls with sleeps of up to 100 ms (the tail latency of 16 concurrent submits). Other
        processes writing the same file still meet SQLite's own lock and ``busy_timeout``."""
        with _write_lock(self.path), self._connect() as conn:
            yield conn

    # -- participants -----------------------------------------------------------------------------------------
    def create_participant(self, participant_id: str, seed: int, plan: Any, user_agent: str = "") -> None:
        with self._writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO participants (participant_id, created_utc, seed, plan_json, user_agent) "
                "VALUES (?, ?, ?, ?, ?)",
                (participant_id, utc_now(), int(seed), json.dumps(plan, sort_keys=True), user_agent[:400]),
            )
            conn.execute("COMMIT")

    def participant(self, participant_id: str) -> dict[str, Any] | None:
        """The participant's seed, plan, submitted page indices, each page's latest revision (``revisions``,
        page index -> revision) and completion code; None if unknown."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT seed, plan_json, completion_code FROM participants WHERE participant_id = ?",
                (participant_id,),
            ).fetchone()
            if row is None:
                return None
            revisions = dict(conn.execute(
                "SELECT page_index, revision FROM pages WHERE participant_id = ? ORDER BY page_index", (participant_id,)
            ).fetchall())
        return {"seed": row[0], "plan": json.loads(row[1]), "done_pages": sorted(revisions), "revisions": revisions,
                "completion_code": row[2]}

    def finish(self, participant_id: str, code: str) -> str:
        """Record ``code`` as the participant's completion code unless one exists; return the stored code."""
        with self._writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE participants SET completion_code = ?, finished_utc = ? "
                "WHERE participant_id = ? AND completion_code IS NULL",
                (code, utc_now(), participant_id),
            )
            stored = conn.execute(
                "SELECT completion_code FROM participants WHERE participant_id = ?", (participant_id,)
            ).fetchone()[0]
            conn.execute("COMMIT")
        return stored

    # -- pages ------------------------------------------------------------------------------------------------
    def submit_page(
        self,
        participant_id: str,
        page_index: int,
        item_id: str,
        is_training: bool,
        ratings: Sequence[Rating],
        digest: str,
        page_duration_s: float | None = None,
        *,
        server_page_time_s: float | None = None,
        audio_fetched: int | None = None,
        behaviour_json: str | None = None,
        replaces_revision: int | None = None,
        attention: AttentionOutcome | None = None,
    ) -> SubmitResult:
        """Store one page and its ratings in ONE transaction, with a copy in ``page_revisions``.

        A second submit of the same payload stores nothing (``duplicate``). A different payload for a stored page
        is a new revision only when ``replaces_revision`` names the page's latest revision (the page went back to
        it with Previous); otherwise it is a ``conflict`` (a second tab, a stale retry) and nothing changes. A
        revision replaces the page's row in ``pages`` and ``ratings`` (the analysis reads the latest), adds the
        listening (``played_s``) and slider moves of the new visit to those of the earlier ones, and keeps every
        earlier revision in ``page_revisions``. Training pages and attention pages are recorded in ``pages`` (and
        ``page_revisions``) but their grades are not in ``ratings``; an attention page's outcome is in ``attention``.
        """
        with self._writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                existing = conn.execute(
                    "SELECT payload_sha256, revision FROM pages WHERE participant_id = ? AND page_index = ?",
                    (participant_id, page_index),
                ).fetchone()
                earlier: dict[str, tuple] = {}
                if existing is not None:
                    if existing[0] == digest:
                        conn.execute("ROLLBACK")
                        return SubmitResult("duplicate", existing[1])
                    if replaces_revision != existing[1]:
                        conn.execute("ROLLBACK")
                        return SubmitResult("conflict", existing[1])
                    finished = conn.execute("SELECT completion_code FROM participants WHERE participant_id = ?",
                                            (participant_id,)).fetchone()
                    if finished is not None and finished[0] is not None:
                        conn.execute("ROLLBACK")
                        return SubmitResult("final", existing[1])
                    revision = existing[1] + 1
                    earlier = {r[0]: (r[1], r[2]) for r in conn.execute(
                        "SELECT condition_id, played_s, slider_moves FROM ratings WHERE participant_id = ? "
                        "AND page_index = ?", (participant_id, page_index))}
                    conn.execute("DELETE FROM ratings WHERE participant_id = ? AND page_index = ?",
                                 (participant_id, page_index))
                    conn.execute("DELETE FROM pages WHERE participant_id = ? AND page_index = ?",
                                 (participant_id, page_index))
                elif replaces_revision:
                    conn.execute("ROLLBACK")
                    return SubmitResult("conflict", 0)
                else:
                    revision = 1
                now = utc_now()
                conn.execute(
                    "INSERT INTO pages (participant_id, page_index, item_id, is_training, submitted_utc, "
                    "payload_sha256, page_duration_s, server_page_time_s, audio_fetched, behaviour_json, revision, "
                    "is_attention) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (participant_id, page_index, item_id, int(is_training), now, digest, page_duration_s,
                     server_page_time_s, audio_fetched, behaviour_json, revision, int(attention is not None)),
                )
                if not is_training and attention is None:
                    conn.executemany(
                        "INSERT INTO ratings (participant_id, page_index, item_id, condition_id, condition, role, "
                        "score, moved, position, played_s, slider_moves) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            (participant_id, page_index, item_id, r.condition_id, r.condition, r.role, int(r.score),
                             int(r.moved), int(r.position), _add(earlier.get(r.condition_id, (None, None))[0],
                                                                  r.played_s),
                             _add(earlier.get(r.condition_id, (None, None))[1], r.slider_moves))
                            for r in ratings
                        ],
                    )
                if attention is not None:
                    conn.execute(
                        "INSERT INTO attention (participant_id, page_index, revision, score, max_score, passed) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (participant_id, page_index) DO UPDATE SET "
                        "revision = excluded.revision, score = excluded.score, max_score = excluded.max_score, "
                        "passed = excluded.passed",
                        (participant_id, page_index, revision, int(attention.score), int(attention.max_score),
                         int(attention.passed)),
                    )
                conn.execute(
                    "INSERT INTO page_revisions (participant_id, page_index, revision, submitted_utc, payload_sha256, "
                    "page_duration_s, server_page_time_s, audio_fetched, behaviour_json, ratings_json) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (participant_id, page_index, revision, now, digest, page_duration_s, server_page_time_s,
                     audio_fetched, behaviour_json, _ratings_json(ratings)),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return SubmitResult("stored", revision)

    def page_history(self, participant_id: str | None = None) -> list[tuple]:
        """Every accepted submission (rows of :data:`HISTORY_COLUMNS`), by participant, page and revision."""
        where, args = ("WHERE participant_id = ?", (participant_id,)) if participant_id else ("", ())
        with self._connect() as conn:
            return conn.execute(f"SELECT {', '.join(HISTORY_COLUMNS)} FROM page_revisions {where} "
                                "ORDER BY participant_id, page_index, revision", args).fetchall()

    def history_frame(self):
        """:meth:`page_history` of every participant as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.page_history(), columns=list(HISTORY_COLUMNS))

    # -- questionnaire ------------------------------------------------------------------------------------------
    def save_questionnaire(self, participant_id: str, answers_json: str) -> bool:
        """Store the end questionnaire once; False if answers were already stored (they are kept)."""
        with self._writing() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO questionnaire (participant_id, submitted_utc, answers_json) VALUES (?, ?, ?)",
                (participant_id, utc_now(), answers_json),
            )
            return cursor.rowcount == 1

    def save_screening(self, participant_id: str, name: str, result_json: str) -> bool:
        """Store a screening result once per (participant, name); False if one was already stored (kept)."""
        with self._writing() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO screenings (participant_id, name, submitted_utc, result_json) VALUES (?, ?, ?, ?)",
                (participant_id, name, utc_now(), result_json),
            )
            return cursor.rowcount == 1

    def has_questionnaire(self, participant_id: str) -> bool:
        with self._connect() as conn:
            return conn.execute("SELECT 1 FROM questionnaire WHERE participant_id = ?",
                                (participant_id,)).fetchone() is not None

    # -- audio fetches ----------------------------------------------------------------------------------------
    def record_fetch(self, participant_id: str, page_index: int, audio_id: str, unix_s: float) -> None:
        """Count one delivery of ``audio_id`` of the participant's page (first time kept)."""
        with self._writing() as conn:
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "INSERT INTO audio_fetches (participant_id, page_index, audio_id, n, first_utc, first_unix_s) "
                "VALUES (?, ?, ?, 1, ?, ?) ON CONFLICT (participant_id, page_index, audio_id) DO UPDATE SET n = n + 1",
                (participant_id, page_index, audio_id, utc_now(), unix_s),
            )
            conn.execute("PRAGMA synchronous=FULL")

    def fetches(self, participant_id: str, page_index: int) -> tuple[int, float | None]:
        """(distinct audio ids delivered for the page, first delivery as Unix seconds or None)."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT COUNT(*), MIN(first_unix_s) FROM audio_fetches WHERE participant_id = ? AND page_index = ?",
                (participant_id, page_index),
            ).fetchone()
        return int(row[0]), row[1]

    # -- reading ----------------------------------------------------------------------------------------------
    def iter_ratings(self) -> Iterator[tuple]:
        """Rows of :data:`EXPORT_COLUMNS` (non-training pages), ordered by participant, page, position."""
        with self._connect() as conn:
            yield from conn.execute(
                "SELECT r.participant_id, r.page_index, p.revision, r.item_id, r.condition, r.condition_id, r.role, "
                "r.score, "
                "r.moved, r.position, p.submitted_utc, p.page_duration_s, r.played_s, r.slider_moves, "
                "p.server_page_time_s, p.audio_fetched, q.user_agent, q.created_utc, q.finished_utc, "
                "q.completion_code, a.answers_json, h.result_json, "
                "(SELECT COUNT(*) FROM attention t WHERE t.participant_id = r.participant_id), "
                "(SELECT COUNT(*) FROM attention t WHERE t.participant_id = r.participant_id AND t.passed = 0) "
                "FROM ratings r JOIN pages p "
                "ON p.participant_id = r.participant_id AND p.page_index = r.page_index "
                "JOIN participants q ON q.participant_id = r.participant_id "
                "LEFT JOIN questionnaire a ON a.participant_id = r.participant_id "
                "LEFT JOIN screenings h ON h.participant_id = r.participant_id AND h.name = 'huggins_pitch' "
                "ORDER BY r.participant_id, r.page_index, r.position"
            ).fetchall()

    def ratings_frame(self):
        """All ratings as a pandas DataFrame with :data:`EXPORT_COLUMNS` (``moved`` as bool)."""
        import pandas as pd

        frame = pd.DataFrame(list(self.iter_ratings()), columns=list(EXPORT_COLUMNS))
        frame["moved"] = frame["moved"].astype(bool)
        frame["score"] = frame["score"].astype("int64")
        return frame

    def counts(self) -> dict[str, int]:
        with self._connect() as conn:
            return {
                table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # table names are constants
                for table in ("participants", "pages", "ratings")
            }


def _add(earlier: float | None, now: float | None) -> float | None:
    """Listening or slider moves of a revisited page: the earlier visits' plus this visit's (None: not recorded)."""
    if earlier is None:
        return now
    return earlier if now is None else earlier + now


def _ratings_json(ratings: Sequence[Rating]) -> str:
    return json.dumps([{"condition_id": r.condition_id, "condition": r.condition, "role": r.role, "score": int(r.score),
                        "moved": bool(r.moved), "position": int(r.position), "played_s": r.played_s,
                        "slider_moves": r.slider_moves} for r in ratings], sort_keys=True)


def _backfill_revisions(conn: sqlite3.Connection) -> None:
    """Upgrade to schema 3: every stored page becomes revision 1 in ``page_revisions`` (grades from ``ratings``)."""
    pages = conn.execute("SELECT participant_id, page_index, submitted_utc, payload_sha256, page_duration_s, "
                         "server_page_time_s, audio_fetched, behaviour_json FROM pages").fetchall()
    for pid, index, *rest in pages:
        rows = conn.execute("SELECT condition_id, condition, role, score, moved, position, played_s, slider_moves "
                            "FROM ratings WHERE participant_id = ? AND page_index = ? ORDER BY position",
                            (pid, index)).fetchall()
        grades = [Rating(*r[:5], r[5], r[6], r[7]) for r in rows]
        conn.execute("INSERT OR IGNORE INTO page_revisions (participant_id, page_index, revision, submitted_utc, "
                     "payload_sha256, page_duration_s, server_page_time_s, audio_fetched, behaviour_json, "
                     "ratings_json) VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?)", (pid, index, *rest, _ratings_json(grades)))


_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(path: Path) -> threading.Lock:
    """One lock per database file in this process (every :class:`RatingsStore` of the file shares it)."""
    key = os.path.realpath(path)
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.Lock())


def _open(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit BEGIN IMMEDIATE ... COMMIT), synchronous=FULL."""
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
    return conn


class _Connection:
    """The calling thread's connection for one block; a transaction left open by an error is rolled back."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def open_existing(path: str | os.PathLike) -> RatingsStore:
    """Open an existing ratings database for analysis; a clear error if the file is absent or not ours."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: ratings database does not exist")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: not an SQLite database ({exc})") from exc
    if not {"participants", "pages", "ratings", "meta"} <= tables:
        raise StoreError(f"{path}: not a codecbench ratings database (tables found: {sorted(tables) or 'none'})")
    return RatingsStore(path)
