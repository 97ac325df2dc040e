"""The MUSHRA web server: FastAPI under uvicorn, ratings stored by :class:`~.store.RatingsStore` page by page.

``create_app(config, db_path)`` builds the app. Routes (all relative, so the test works under a path prefix
behind a reverse proxy):

| route | who | what |
|---|---|---|
| ``GET /`` , ``GET /page/<file>`` | anyone | the page (only the bundle's page files) |
| ``GET /api/test`` | anyone | title and page count |
| ``POST /api/participants`` | anyone, same origin, ``{"consent": true}`` | new participant: opaque id, random plan (item and stimulus order, per-participant random audio ids); capped and rate-limited |
| ``GET /api/participants/<id>/audio/<audio id>`` | holder of the id | one signal of one of the participant's pages, from memory |
| ``GET /api/participants/<id>`` | holder of the id | the plan and the pages already submitted (resume), never grades |
| ``POST /api/participants/<id>/pages/<n>`` | holder of the id | one page's grades, validated, stored in one transaction; an earlier page again (Previous) with ``replaces_revision`` = its latest revision: a new revision, every revision kept |
| ``POST /api/participants/<id>/finish`` | holder of the id | the completion code (after every page) |
| ``GET /api/admin/export.csv``, ``.parquet`` | ``Authorization: Bearer <admin token>`` | every rating (latest revision of each page) |
| ``GET /api/admin/history.csv`` | admin token | every accepted submission of every page (all revisions) |
| ``GET /api/admin/report.html`` | admin token | the analysis of the ratings so far as the researcher's results page |

No answer key reaches the browser:

- every participant gets fresh random audio ids (``secrets``), different for every page, reference included; the
  page's stimulus ids ARE those ids, so two participants share no id and the id order says nothing;
- audio is served from memory as WAV built per response: the same fixed headers for every signal
  (``Cache-Control: no-store``, no ``ETag``, ``Last-Modified`` or file name), the same size for every signal of a
  trial (they have the same length by construction) and a ``JUNK`` chunk of 64 random bytes after ``fmt``, so no
  two responses are byte-identical (the open reference and the hidden reference differ on the wire) while their
  samples are identical after decoding. What cannot be hidden: a participant who decodes the WAV and compares
  samples finds the hidden reference, as in every MUSHRA test that plays an open reference (BS.1534-3 requires
  both);
- every delivery is counted per participant and page (``audio_fetches``), so the server can refuse a page graded
  without its audio or faster than ``min_page_time_s`` after its first audio delivery.

Condition names never reach the participant, and neither do attention checks (:mod:`.attention`): the pages
config the browser receives has no ``attention_checks`` key, an attention page has the shape of every other trial,
and which of its stimuli is degraded is in the stored plan only.
"""

from __future__ import annotations

import collections
import hmac
import io
import json
import logging
import os
import random
import re
import secrets
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codecbench.listening_test.attention import DEGRADED, add_attention_pages, degraded_pcm
from codecbench.listening_test.bundle import STATIC_FILES, load_bundle
from codecbench.listening_test.store import AttentionOutcome, Rating, RatingsStore, payload_digest
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

PARTICIPANT_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
AUDIO_ID = re.compile(r"^[A-Za-z0-9_-]{12,32}$")
JUNK_BYTES = 64  # random padding chunk in every served WAV: no two responses are byte-identical
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
access_log = logging.getLogger("uvicorn.error")  # uvicorn's own access log is off: it would print participant ids
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".wav": "audio/wav"}


class RatingIn(BaseModel):
    """One grade as the page sends it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    stimulus_id: str = Field(min_length=1, max_length=32)
    score: StrictInt = Field(ge=0, le=100)
    moved: StrictBool
    played_s: float | None = Field(default=None, ge=0, le=86_400)  # seconds this stimulus was heard
    n_plays: StrictInt | None = Field(default=None, ge=0, le=100_000)  # times it was switched to / started
    slider_moves: StrictInt | None = Field(default=None, ge=0, le=100_000)


class PageIn(BaseModel):
    """One submitted page: a grade for every stimulus (at most 12), what was played, and the page time."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    ratings: list[RatingIn] = Field(min_length=1, max_length=12)
    page_duration_s: float | None = Field(default=None, ge=0, le=86_400)
    reference_played_s: float | None = Field(default=None, ge=0, le=86_400)
    loop_changes: StrictInt | None = Field(default=None, ge=0, le=100_000)
    replaces_revision: StrictInt | None = Field(default=None, ge=1, le=10_000)  # Previous: the revision changed


class QuestionnaireIn(BaseModel):
    """The end questionnaire's answers, by question id."""

    model_config = ConfigDict(extra="forbid")
    answers: dict[str, str] = Field(max_length=30)


class ScreeningIn(BaseModel):
    """A screening result reported by the page (the headphone check)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z_]{1,32}$")
    correct: StrictInt = Field(ge=0, le=20)
    trials: StrictInt = Field(ge=1, le=20)
    passed: StrictBool


class NewParticipantIn(BaseModel):
    """The start request: consent given on the page, and what the browser's audio runs at."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    consent: StrictBool
    sample_rate_hz: float | None = Field(default=None, gt=0, le=1_000_000)


@dataclass(frozen=True)
class ServerConfig:
    """What the server serves and its limits.

    Args:
        bundle_dir: the bundle built by ``codecbench mushra build``.
        admin_token: bearer token for the exports; None disables them.
        max_body_bytes: requests with a larger body are refused with 413.
        max_participants: new participants are refused (503) beyond this count.
        participants_per_minute: new participants per minute, all clients together (429 beyond).
        participants_per_minute_per_client: new participants per minute from one client address (429 beyond).
        require_audio: refuse a page (422) none of whose audio the server delivered to the participant.
        min_page_time_s: refuse a page (422) submitted sooner than this after its first audio delivery.
        min_listening_s: refuse a page (422) whose reported listening (all signals together) is shorter.
        allowed_origins: extra origins (``https://host``) allowed to create participants besides the page's own.
    """

    bundle_dir: Path
    admin_token: str | None = None
    max_body_bytes: int = 16_384
    max_participants: int = 100_000
    participants_per_minute: int = 120
    participants_per_minute_per_client: int = 10
    require_audio: bool = True
    min_page_time_s: float = 0.0
    min_listening_s: float = 0.0
    allowed_origins: tuple[str, ...] = ()
    pages: dict[str, Any] | None = None  # consent text, instructions, end questionnaire: see load_pages


QUESTION_ID = re.compile(r"^[a-z0-9_]{1,32}$")


def load_pages(path: str | os.PathLike) -> dict[str, Any]:
    """The configurable pages from a JSON file, checked (one-line errors naming the file and key)::

        {"consent": "text", "instructions": ["paragraph", ...],
         "questionnaire": [{"id": "age", "label": "Your age", "type": "choice", "options": ["18-29", ...]},
                           {"id": "comments", "label": "Comments", "type": "text"}],
         "calibration": "text", "headphone_check": {"trials": 6, "pass": 5, "required": false},
         "attention_checks": {"pages": 2, "max_score": 30}}

    Every text is shown with ``textContent`` (never as HTML). ``attention_checks`` is never sent to the browser
    (:func:`public_pages_config`).
    """
    from codecbench.bench.core.errors import ConfigError

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the pages file ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    keys = ("consent", "instructions", "calibration", "headphone_check", "questionnaire", "attention_checks")
    unknown = sorted(set(data) - set(keys))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (keys: {', '.join(keys)})")
    if not isinstance(data.get("calibration", ""), str):
        raise ConfigError(f"{path}: 'calibration' must be a text")
    check = data.get("headphone_check")
    if check is not None:
        if (not isinstance(check, dict) or set(check) - {"trials", "pass", "required"}
                or not isinstance(check.get("trials", 6), int) or not isinstance(check.get("pass", 5), int)
                or not 1 <= check.get("pass", 5) <= check.get("trials", 6) <= 20):
            raise ConfigError(f"{path}: 'headphone_check' must be {{\"trials\": 1-20, \"pass\": 1-trials, "
                              f"\"required\": true|false}}")
        check = {"trials": check.get("trials", 6), "pass": check.get("pass", 5),
                 "required": bool(check.get("required", False))}
    attention = data.get("attention_checks")
    if attention is not None:
        if (not isinstance(attention, dict) or set(attention) - {"pages", "max_score"}
                or type(attention.get("pages", 1)) is not int or type(attention.get("max_score", 30)) is not int
                or not 1 <= attention.get("pages", 1) <= 5 or not 0 <= attention.get("max_score", 30) <= 90):
            raise ConfigError(f"{path}: 'attention_checks' must be {{\"pages\": 1-5, \"max_score\": 0-90}}")
        attention = {"pages": attention.get("pages", 1), "max_score": attention.get("max_score", 30)}
    if not isinstance(data.get("consent", ""), str) or len(data.get("consent", "")) > 5000:
        raise ConfigError(f"{path}: 'consent' must be a text of at most 5000 characters")
    instructions = data.get("instructions", [])
    if not isinstance(instructions, list) or not all(isinstance(t, str) and len(t) <= 5000 for t in instructions):
        raise ConfigError(f"{path}: 'instructions' must be a list of texts")
    questions = data.get("questionnaire", [])
    if not isinstance(questions, list) or len(questions) > 30:
        raise ConfigError(f"{path}: 'questionnaire' must be a list of at most 30 questions")
    seen = set()
    for k, q in enumerate(questions):
        where = f"{path}: questionnaire[{k}]"
        if not isinstance(q, dict) or not QUESTION_ID.match(str(q.get("id", ""))) or q["id"] in seen:
            raise ConfigError(f"{where}: 'id' must be unique and match [a-z0-9_]{{1,32}}")
        seen.add(q["id"])
        if not isinstance(q.get("label"), str) or q.get("type") not in ("text", "choice"):
            raise ConfigError(f"{where}: needs a text 'label' and 'type' text or choice")
        if q["type"] == "choice" and not (isinstance(q.get("options"), list) and q["options"]
                                          and all(isinstance(o, str) for o in q["options"])):
            raise ConfigError(f"{where}: a choice needs a non-empty list of text 'options'")
    return {"consent": data.get("consent", ""), "instructions": instructions, "questionnaire": questions,
            "calibration": data.get("calibration", ""), "headphone_check": check, "attention_checks": attention}


def public_pages_config(pages: dict[str, Any]) -> dict[str, Any]:
    """What the browser may see of the pages config: everything but the attention checks (the answer key)."""
    return {k: v for k, v in pages.items() if k != "attention_checks"}


class RateLimiter:
    """Sliding one-minute window: at most ``limit`` events per key (thread-safe)."""

    def __init__(self, limit: int, window_s: float = 60.0):
        self.limit, self.window_s = limit, window_s
        self.events: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self.lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self.lock:
            events = self.events[key]
            while events and now - events[0] >= self.window_s:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            if len(self.events) > 10_000:  # forget idle clients
                for k in [k for k, v in self.events.items() if not v]:
                    del self.events[k]
            return True


def _pcm(path: Path) -> tuple[bytes, int, int]:
    """A bundle WAV's 16-bit samples as little-endian interleaved bytes, its rate and channel count."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="int16", always_2d=True)  # [T, C]
    return data.astype("<i2").tobytes(), int(rate), int(data.shape[1])


def wav_bytes(pcm: bytes, sample_rate_hz: int, channels: int) -> bytes:
    """A PCM-16 WAV of ``pcm`` with a ``JUNK`` chunk of random bytes: sample-identical, never byte-identical."""
    fmt = struct.pack("<HHIIHH", 1, channels, sample_rate_hz, sample_rate_hz * channels * 2, channels * 2, 16)
    junk = secrets.token_bytes(JUNK_BYTES)
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"JUNK" + struct.pack("<I", len(junk)) + junk
            + b"data" + struct.pack("<I", len(pcm)) + pcm)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def assign_audio_ids(plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every signal of every page a fresh random audio id (reference included), in place; returns ``plan``."""
    for page in plan:
        page["reference_id"] = secrets.token_urlsafe(12)
        page["audio_ids"] = {sid: secrets.token_urlsafe(12) for sid in page["stimuli"]}
    return plan


def make_plan(description: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """The participant's pages: a training page, then every item, items and stimuli shuffled with ``seed``.

    Each page: ``{"index", "item", "training", "stimuli": [opaque ids in display order]}``.
    """
    rng = random.Random(seed)
    items = {item["key"]: item for item in description["items"]}
    training_key = next(i["key"] for i in description["items"] if i["item_id"] == description["training_item"])
    order = sorted(items)
    rng.shuffle(order)
    pages = []
    for index, key in enumerate([training_key, *order]):
        stimuli = [s["id"] for s in items[key]["stimuli"]]
        rng.shuffle(stimuli)
        pages.append({"index": index, "item": key, "training": index == 0, "stimuli": stimuli})
    return pages


def create_app(config: ServerConfig, db_path: str | os.PathLike):
    """Build the FastAPI app serving ``config.bundle_dir`` and storing ratings in ``db_path`` (SQLite, WAL)."""
    description = load_bundle(config.bundle_dir)
    root = Path(config.bundle_dir).resolve()
    store = RatingsStore(db_path)
    items = {item["key"]: item for item in description["items"]}
    stimuli = {(item["key"], s["id"]): s for item in description["items"] for s in item["stimuli"]}
    # every signal in memory, read once: the ONLY audio the server ever sends; no URL path reaches the disk
    pcm = {}
    for item in description["items"]:
        pcm[(item["key"], None)] = _pcm(root / item["reference_file"])
        for s in item["stimuli"]:
            pcm[(item["key"], s["id"])] = _pcm(root / s["file"])
    page_files = {name: (root / "page" / name).read_bytes() for name in STATIC_FILES}
    plans: dict[str, list[dict[str, Any]]] = {}  # participant id -> plan (plans never change once created)
    pages_config = config.pages or {"consent": "", "instructions": [], "questionnaire": []}
    attention = pages_config.get("attention_checks")
    item_number = {item["key"]: k for k, item in enumerate(description["items"])}

    def degraded(key: str) -> tuple[bytes, int, int]:  # an item's degraded signal, from its reference (never on disk)
        if (key, DEGRADED) not in pcm:
            ref_pcm, rate, channels = pcm[(key, None)]
            pcm[(key, DEGRADED)] = (degraded_pcm(ref_pcm, channels, seed=item_number[key]), rate, channels)
        return pcm[(key, DEGRADED)]

    if attention:  # made before serving, so that no delivery is slower than another (a timing leak)
        for item in description["items"]:
            degraded(item["key"])
    browser_pages = public_pages_config(pages_config)
    questions = {q["id"]: q for q in pages_config["questionnaire"]}
    global_limit = RateLimiter(config.participants_per_minute)
    client_limit = RateLimiter(config.participants_per_minute_per_client)

    app = FastAPI(title=description["title"], docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store = store
    app.state.description = description
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=config.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # never echo the input back (1e400 parses to inf, which JSON cannot carry: that was an HTTP 500)
        detail = [{"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": e.get("type")}
                  for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            if key != "Content-Security-Policy" or key not in response.headers:  # the report sets its own
                response.headers[key] = value
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        path = re.sub(r"/api/participants/[^/]+", "/api/participants/<id>", request.url.path)
        path = re.sub(r"/audio/[^/]+", "/audio/<id>", path)
        access_log.info("%s %s %d %.1f ms", request.method, path, response.status_code,
                        1000 * (time.perf_counter() - started))
        return response

    def participant_or_404(participant_id: str) -> dict[str, Any]:
        if not PARTICIPANT_ID.match(participant_id):
            raise HTTPException(404, "unknown participant")
        found = store.participant(participant_id)
        if found is None:
            raise HTTPException(404, "unknown participant")
        plans[participant_id] = found["plan"]
        return found

    def plan_of(participant_id: str) -> list[dict[str, Any]]:
        if participant_id not in plans:
            participant_or_404(participant_id)
        return plans[participant_id]

    def audio_url(participant_id: str, audio_id: str) -> str:
        return f"api/participants/{participant_id}/audio/{audio_id}"

    def public_pages(participant_id: str, plan: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "index": p["index"],
                "training": p["training"],
                "reference": audio_url(participant_id, p["reference_id"]),
                "stimuli": [{"id": p["audio_ids"][sid], "url": audio_url(participant_id, p["audio_ids"][sid])}
                            for sid in p["stimuli"]],
                "duration_s": items[p["item"]]["duration_s"],
            }
            for p in plan
        ]

    def session(participant_id: str, found: dict[str, Any]) -> dict[str, Any]:
        return {
            "participant_id": participant_id,
            "title": description["title"],
            "pages": public_pages(participant_id, found["plan"]),
            "done_pages": found["done_pages"],
            "revisions": [found.get("revisions", {}).get(p["index"], 0) for p in found["plan"]],
            "completion_code": found["completion_code"],
            "questionnaire_done": store.has_questionnaire(participant_id),
        }

    def static(name: str) -> Response:
        return Response(page_files[name], media_type=MEDIA_TYPES[Path(name).suffix])

    # -- the page and its audio -----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return static("index.html")

    @app.get("/page/{name}", include_in_schema=False)
    def page_file(name: str) -> Response:
        if name not in page_files:
            raise HTTPException(404, "not found")
        return static(name)

    @app.get("/api/participants/{participant_id}/audio/{audio_id}", include_in_schema=False)
    def audio(participant_id: str, audio_id: str) -> Response:
        if not AUDIO_ID.match(audio_id):
            raise HTTPException(404, "not found")
        for page in plan_of(participant_id):
            if page["reference_id"] == audio_id:
                key = (page["item"], None)
            else:
                key = next(((page["item"], sid) for sid, aid in page["audio_ids"].items() if aid == audio_id), None)
                if key is not None and key[1] == page.get("attention", {}).get("degraded"):
                    key = (page["item"], DEGRADED)
            if key is not None:
                store.record_fetch(participant_id, page["index"], audio_id, time.time())
                # degraded(): also for plans made before a restart without attention_checks in the config
                signal = degraded(key[0]) if key[1] == DEGRADED else pcm[key]
                return Response(wav_bytes(*signal), media_type=MEDIA_TYPES[".wav"])
        raise HTTPException(404, "not found")

    # -- participants -----------------------------------------------------------------------------------------
    @app.get("/api/test")
    def test_info() -> dict[str, Any]:
        return {"title": description["title"], "n_pages": len(items) + 1 + (attention or {}).get("pages", 0),
                "bundle_id": description["bundle_id"], "sample_rate_hz": description.get("sample_rate_hz"),
                "pages": browser_pages}

    def check_origin(request: Request) -> None:
        origin = request.headers.get("origin")
        if origin is not None:
            own = {f"{request.url.scheme}://{request.headers.get('host', '')}", *config.allowed_origins}
            forwarded = request.headers.get("x-forwarded-host")
            if forwarded:
                own.add(f"{request.headers.get('x-forwarded-proto', request.url.scheme)}://{forwarded}")
            if origin not in own:
                raise HTTPException(403, "participants can only be created from the test's own page")
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise HTTPException(403, "participants can only be created from the test's own page")

    @app.post("/api/participants")
    def new_participant(request: Request, body: NewParticipantIn) -> dict[str, Any]:
        check_origin(request)
        if not body.consent:
            raise HTTPException(422, "consent is required to take part")
        client = request.client.host if request.client else "unknown"
        if not client_limit.allow(client) or not global_limit.allow("all"):
            raise HTTPException(429, "too many new participants; try again in a minute")
        if store.counts()["participants"] >= config.max_participants:
            raise HTTPException(503, "this test accepts no more participants")
        participant_id = secrets.token_urlsafe(18)
        seed = secrets.randbits(31)
        plan = make_plan(description, seed)
        if attention:
            plan = add_attention_pages(plan, description, attention["pages"], attention["max_score"], seed)
        plan = assign_audio_ids(plan)
        store.create_participant(participant_id, seed, plan, request.headers.get("user-agent", ""))
        plans[participant_id] = plan
        return session(participant_id, {"plan": plan, "done_pages": [], "revisions": {}, "completion_code": None})

    @app.get("/api/participants/{participant_id}")
    def get_participant(participant_id: str) -> dict[str, Any]:
        return session(participant_id, participant_or_404(participant_id))

    @app.post("/api/participants/{participant_id}/pages/{page_index}")
    def submit_page(participant_id: str, page_index: int, body: PageIn) -> JSONResponse:
        plan = plan_of(participant_id)
        if not 0 <= page_index < len(plan):
            raise HTTPException(404, f"page {page_index} does not exist (pages 0 to {len(plan) - 1})")
        page = plan[page_index]
        by_audio_id = {aid: sid for sid, aid in page["audio_ids"].items()}
        given = [r.stimulus_id for r in body.ratings]
        unknown = sorted(set(given) - set(by_audio_id))
        if unknown:
            raise HTTPException(422, f"unknown stimulus id {unknown[0]!r} for page {page_index}")
        if len(given) != len(set(given)):
            raise HTTPException(422, "a stimulus is rated more than once")
        missing = sorted(set(by_audio_id) - set(given))
        if missing:
            raise HTTPException(422, f"every stimulus of page {page_index} must be rated; missing {len(missing)}")
        if not any(r.score == 100 for r in body.ratings):
            raise HTTPException(422, "at least one stimulus must be rated 100 (the hidden reference is among them)")
        n_fetched, first_fetch = store.fetches(participant_id, page_index)
        if config.require_audio and n_fetched == 0:
            raise HTTPException(422, f"no audio of page {page_index} was fetched: listen before grading")
        server_time_s = None if first_fetch is None else max(0.0, time.time() - first_fetch)
        if config.min_page_time_s > 0 and (server_time_s or 0.0) < config.min_page_time_s:
            raise HTTPException(422, f"page {page_index} submitted {server_time_s or 0.0:.1f} s after its audio "
                                f"arrived; at least {config.min_page_time_s:g} s of listening is required")
        if config.min_listening_s > 0:
            heard = sum(r.played_s or 0.0 for r in body.ratings) + (body.reference_played_s or 0.0)
            if heard < config.min_listening_s:
                raise HTTPException(422, f"page {page_index}: {heard:.1f} s of audio played; at least "
                                    f"{config.min_listening_s:g} s is required")
        outcome = None
        if page.get("attention"):
            degraded = page["attention"]["degraded"]
            score = next(r.score for r in body.ratings if by_audio_id[r.stimulus_id] == degraded)
            outcome = AttentionOutcome(score, page["attention"]["max_score"])
        order = page["stimuli"]
        ratings = []
        for r in body.ratings:
            sid = by_audio_id[r.stimulus_id]
            s = stimuli[(page["item"], sid)]
            condition, role = s["condition"], s["role"]
            if outcome is not None and sid == page["attention"]["degraded"]:
                condition = role = "attention_degraded"  # in the page history only, never in the ratings
            ratings.append(Rating(sid, condition, role, r.score, r.moved, order.index(sid), r.played_s,
                                  r.slider_moves))
        behaviour = {"reference_played_s": body.reference_played_s, "loop_changes": body.loop_changes,
                     "stimuli": {by_audio_id[r.stimulus_id]: {"played_s": r.played_s, "n_plays": r.n_plays,
                                                               "slider_moves": r.slider_moves} for r in body.ratings}}
        result = store.submit_page(
            participant_id, page_index, items[page["item"]]["item_id"], page["training"], ratings,
            payload_digest(body.model_dump()), body.page_duration_s, server_page_time_s=server_time_s,
            audio_fetched=n_fetched, behaviour_json=json.dumps(behaviour, sort_keys=True),
            replaces_revision=body.replaces_revision, attention=outcome,
        )
        if result.status == "conflict":
            return JSONResponse({"status": "conflict", "revision": result.revision, "detail": (
                f"this page was already submitted with other grades (revision {result.revision}); the stored "
                "grades are kept (to change them, go back to the page with Previous)")}, status_code=409)
        if result.status == "final":
            return JSONResponse({"status": "final", "revision": result.revision,
                                 "detail": "the test is finished: its pages can no longer be changed"},
                                status_code=409)
        return JSONResponse({"status": result.status, "revision": result.revision})

    @app.post("/api/participants/{participant_id}/questionnaire")
    def questionnaire(participant_id: str, body: QuestionnaireIn) -> JSONResponse:
        participant_or_404(participant_id)
        unknown = sorted(set(body.answers) - set(questions))
        if unknown:
            raise HTTPException(422, f"unknown question {unknown[0][:40]!r}")
        for qid, answer in body.answers.items():
            if len(answer) > 2000:
                raise HTTPException(422, f"answer to {qid!r} longer than 2000 characters")
            if questions[qid]["type"] == "choice" and answer not in ("", *questions[qid]["options"]):
                raise HTTPException(422, f"answer to {qid!r} is not one of its options")
        if not store.save_questionnaire(participant_id, json.dumps(body.answers, sort_keys=True)):
            return JSONResponse({"status": "conflict", "detail": "answers were already sent"}, status_code=409)
        return JSONResponse({"status": "stored"})

    @app.post("/api/participants/{participant_id}/screening")
    def screening(participant_id: str, body: ScreeningIn) -> JSONResponse:
        participant_or_404(participant_id)
        if body.correct > body.trials:
            raise HTTPException(422, "more correct answers than trials")
        stored = store.save_screening(participant_id, body.name, json.dumps(body.model_dump(), sort_keys=True))
        return JSONResponse({"status": "stored" if stored else "duplicate"})

    @app.post("/api/participants/{participant_id}/finish")
    def finish(participant_id: str) -> dict[str, Any]:
        found = participant_or_404(participant_id)
        missing = sorted(set(range(len(found["plan"]))) - set(found["done_pages"]))
        if missing:
            raise HTTPException(409, f"pages {missing} are not submitted yet")
        code = store.finish(participant_id, "CB-" + secrets.token_hex(5).upper())
        return {"completion_code": code}

    # -- admin ------------------------------------------------------------------------------------------------
    def require_admin(request: Request) -> None:
        if not config.admin_token:
            raise HTTPException(403, "exports are disabled (the server was started without an admin token)")
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            raise HTTPException(401, "admin token required: Authorization: Bearer <token>",
                                headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(header[7:].strip().encode(), config.admin_token.encode()):
            raise HTTPException(403, "wrong admin token")

    @app.get("/api/admin/export.csv")
    def export_csv(request: Request) -> Response:
        require_admin(request)
        data = store.ratings_frame().to_csv(index=False)
        return Response(data, media_type="text/csv", headers={"Content-Disposition": "attachment; filename=ratings.csv"})

    @app.get("/api/admin/history.csv")
    def export_history(request: Request) -> Response:
        require_admin(request)
        data = store.history_frame().to_csv(index=False)
        return Response(data, media_type="text/csv", headers={"Content-Disposition": "attachment; filename=history.csv"})

    @app.get("/api/admin/report.html")
    def report(request: Request, n_resamples: int = 2000) -> Response:
        require_admin(request)
        if not 100 <= n_resamples <= 100_000:
            raise HTTPException(422, "n_resamples must be in [100, 100000]")
        body, status = live_report(store, n_resamples)
        return Response(body, status_code=status, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": REPORT_CSP})

    @app.get("/api/admin/export.parquet")
    def export_parquet(request: Request) -> Response:
        require_admin(request)
        buffer = io.BytesIO()
        store.ratings_frame().to_parquet(buffer, index=False)
        return Response(buffer.getvalue(), media_type="application/vnd.apache.parquet",
                        headers={"Content-Disposition": "attachment; filename=ratings.parquet"})

    return app


REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")


_REPORT_LOCK = threading.Lock()  # one report at a time: matplotlib's pyplot is not thread-safe


def live_report(store: RatingsStore, n_resamples: int) -> tuple[str, int]:
    """The analysis of everything stored so far as the results page (HTML, every text escaped) and its status:
    200, or 409 with a one-line page when there is nothing to analyse yet."""
    with _REPORT_LOCK:
        return _live_report(store, n_resamples)


def _live_report(store: RatingsStore, n_resamples: int) -> tuple[str, int]:
    import html
    import tempfile
    import warnings

    from codecbench.listening_test.analysis import AnalysisError, FewAssessorsWarning, analyze_frame, screening_report

    frame = store.ratings_frame()
    if frame.empty:
        return _message_page("No ratings stored yet."), 409
    anchor = "lowpass_7k" if "lowpass_7k" in set(frame["condition"]) else None
    with tempfile.TemporaryDirectory(prefix="mushra-report-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FewAssessorsWarning)  # the page shows every CI warning itself
        try:
            analyze_frame(frame, tmp, anchor=anchor, n_resamples=n_resamples)
        except AnalysisError as exc:
            if "post-screening excluded all" in str(exc):  # still worth seeing: who was excluded, and why
                return screening_report(frame, anchor=anchor), 200
            return _message_page(f"Cannot analyse the ratings yet: {html.escape(str(exc))}"), 409
        return (Path(tmp) / "report.html").read_text(), 200


def _message_page(text: str) -> str:
    return f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>MUSHRA results</title></head><body><p>{text}</p></body></html>"


class BodyLimitMiddleware:
    """Refuse request bodies above ``max_body_bytes`` with 413, by Content-Length or while streaming (ASGI)."""

    def __init__(self, app, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return await _too_large(send, self.max_body_bytes)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge(self.max_body_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(send, self.max_body_bytes)


class _BodyTooLarge(HTTPException):
    """Raised while the body streams in; an HTTPException so that FastAPI's body parser passes it on as 413."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body larger than {limit} bytes")


async def _too_large(send, limit: int) -> None:
    body = f'{{"detail":"request body larger than {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve(
    bundle_dir: str | os.PathLike,
    db_path: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    admin_token: str | None = None,
    root_path: str = "",
    forwarded_allow_ips: str = "127.0.0.1",
    log_level: str = "info",
    config: ServerConfig | None = None,
) -> None:
    """Run the server under uvicorn (one process: SQLite has one writer; WAL lets readers run alongside)."""
    import uvicorn

    config = config or ServerConfig(bundle_dir=Path(bundle_dir), admin_token=admin_token)
    app = create_app(config, db_path)
    uvicorn.run(app, host=host, port=port, root_path=root_path, proxy_headers=True,
                forwarded_allow_ips=forwarded_allow_ips, log_level=log_level, access_log=False)
