"""Attention-check pages: trials whose correct answer only the server knows.

An attention page looks exactly like a trial (same item, same number of stimuli, fresh random audio ids, shuffled
order, not marked in anything the browser receives), but one of its non-reference stimuli is replaced by an
obviously degraded signal: the item's reference plus white noise at 0 dB SNR (noise RMS = signal RMS), made by the
server from the reference at start-up (never written to the bundle). An attentive listener grades it low; the page
passes when that stimulus is graded at most ``max_score``. Which stimulus is degraded and the threshold are stored in
the participant's plan in the database only; the page's grades are kept in the page history, not in ``ratings``.

Audio shapes: PCM-16 little-endian interleaved bytes [T * C], as the server holds every signal.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

DEGRADED = "__attention_degraded__"  # pcm key of an item's degraded signal (never an audio id or a stimulus id)
ATTENTION_SNR_DB = 0.0


def degraded_pcm(pcm: bytes, channels: int, seed: int) -> bytes:
    """The reference ``pcm`` plus white noise at :data:`ATTENTION_SNR_DB` dB SNR, clipped to 16 bits."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64).reshape(-1, channels)
    rms = float(np.sqrt(np.mean(x**2))) or 1000.0
    noise = np.random.default_rng(seed).standard_normal(x.shape)
    y = x + noise * rms * 10 ** (-ATTENTION_SNR_DB / 20)
    return np.clip(np.round(y), -32768, 32767).astype("<i2").tobytes()


def add_attention_pages(plan: list[dict[str, Any]], description: dict[str, Any], n_pages: int, max_score: int,
                        seed: int) -> list[dict[str, Any]]:
    """Insert ``n_pages`` attention pages at random positions after the training page (one item each, drawn from
    the rated items, one non-reference stimulus drawn to be degraded); pages are renumbered. Returns a new plan."""
    if n_pages <= 0:
        return plan
    rng = random.Random(seed ^ 0x5A7E)
    items = {item["key"]: item for item in description["items"]}
    rated = [p["item"] for p in plan if not p["training"]]
    out = [dict(p) for p in plan]
    for _ in range(n_pages):
        key = rng.choice(rated)
        stimuli = [s["id"] for s in items[key]["stimuli"]]
        rng.shuffle(stimuli)
        candidates = sorted(s["id"] for s in items[key]["stimuli"] if s["role"] != "reference")
        page = {"index": -1, "item": key, "training": False, "stimuli": stimuli,
                "attention": {"degraded": rng.choice(candidates), "max_score": int(max_score)}}
        out.insert(rng.randint(1, len(out)), page)
    for index, page in enumerate(out):
        page["index"] = index
    return out
