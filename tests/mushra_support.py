"""Test support for the MUSHRA tests: a synthetic finished run folder in the runner's exact layout, and a real
uvicorn server subprocess on loopback.

Run folder (docs/architecture.md): ``results.parquet`` (codec, point, item_id, clip_hash, decoded_key, is_anchor,
level, metric, value, ...), ``manifest.json`` with ``cache_dir``; ``cache_dir/clips/<h[:2]>/<h>.wav`` references and
``cache_dir/decoded/<k[:2]>/<k>.wav`` decoded audio at the evaluation rate (float32 WAV).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from codecbench.bench.core import audio as audio_io
from codecbench.bench.core.cache import Cache, make_key

SAMPLE_RATE_HZ = 24_000
TEST_CONDITIONS = {"opus": ("bitrate_kbps=6", "bitrate_kbps=12"), "toycodec": ("default",)}


def _lowpass(x: np.ndarray, cutoff_hz: float, sample_rate_hz: int) -> np.ndarray:
    from scipy import signal

    sos = signal.butter(8, cutoff_hz, fs=sample_rate_hz, output="sos")
    return signal.sosfiltfilt(sos, x, axis=-1).astype(np.float32)


def write_run(
    root: Path,
    *,
    n_items: int = 3,
    duration_s: float = 2.0,
    sample_rate_hz: int = SAMPLE_RATE_HZ,
    with_anchors: bool = True,
    conditions: dict[str, tuple[str, ...]] = TEST_CONDITIONS,
    seed: int = 7,
) -> Path:
    """Write a finished run folder under ``root`` (run in ``root/run``, cache in ``root/cache``); returns the run dir.

    References are seeded tone+noise mixtures [1, T]; a condition at point p is the reference plus white noise
    (different SNR per point); anchors are 8th-order Butterworth low-passes at 7 and 3.5 kHz.
    """
    import pandas as pd

    rng = np.random.default_rng(seed)
    run_dir, cache_dir = root / "run", root / "cache"
    run_dir.mkdir(parents=True)
    t = np.arange(int(duration_s * sample_rate_hz)) / sample_rate_hz
    rows = []
    all_conditions = dict(conditions)
    if with_anchors:
        all_conditions.update({"reference": ("default",), "lowpass_7k": ("default",), "lowpass_3k5": ("default",)})
    for i in range(n_items):
        f0 = 220.0 * (1 + i)
        ref = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.1 * np.sin(2 * np.pi * 3.1 * f0 * t) + 0.05 * rng.standard_normal(t.size)
        ref = ref[None].astype(np.float32)  # [C=1, T]
        clip_hash = audio_io.content_hash(ref, sample_rate_hz)
        Cache(cache_dir).put_audio("clips", clip_hash, ref, sample_rate_hz)  # with its digest record
        item_id = f"clip{i:02d}#0"
        for codec, points in all_conditions.items():
            for j, point in enumerate(points):
                if codec == "reference":
                    out = ref
                elif codec == "lowpass_7k":
                    out = _lowpass(ref, 7000, sample_rate_hz)
                elif codec == "lowpass_3k5":
                    out = _lowpass(ref, 3500, sample_rate_hz)
                else:
                    out = (ref + (0.05 / (j + 1)) * rng.standard_normal(ref.shape)).astype(np.float32)
                key = make_key(clip=clip_hash, codec=codec, point=point)
                Cache(cache_dir).put_audio("decoded", key, out, sample_rate_hz)
                for metric in ("si_sdr", "mel_distance"):
                    rows.append({
                        "run": "synthetic", "codec": codec, "codec_kind": "anchor" if codec in (
                            "reference", "lowpass_7k", "lowpass_3k5") else "classic",
                        "is_anchor": codec in ("reference", "lowpass_7k", "lowpass_3k5"), "point": point,
                        "item_id": item_id, "clip_path": f"/data/clip{i:02d}.wav", "clip_hash": clip_hash,
                        "decoded_key": key, "duration_s": duration_s, "level": "item", "metric": metric,
                        "value": float(rng.normal()), "status": "ok",
                    })
    for codec, points in all_conditions.items():  # set-level rows: no item, no decoded audio
        for point in points:
            rows.append({"run": "synthetic", "codec": codec, "codec_kind": "classic", "is_anchor": False,
                         "point": point, "item_id": "", "clip_path": "", "clip_hash": "", "decoded_key": "",
                         "duration_s": np.nan, "level": "set", "metric": "fad", "value": 1.0, "status": "ok"})
    pd.DataFrame(rows).to_parquet(run_dir / "results.parquet", index=False)
    (run_dir / "manifest.json").write_text(json.dumps({"run": "synthetic", "cache_dir": str(cache_dir)}))
    return run_dir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``codecbench mushra serve`` as a real uvicorn subprocess on 127.0.0.1 (killed by :meth:`kill` / :meth:`stop`)."""

    def __init__(self, bundle: Path, db: Path, token: str = "t" * 32, port: int | None = None,
                 extra_args: tuple[str, ...] = ("--participants-per-minute", "100000",
                                                "--participants-per-minute-per-client", "100000")):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, CODECBENCH_MUSHRA_ADMIN_TOKEN=token)
        self.log = open(db.with_suffix(".log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "codecbench.bench.cli", "mushra", "serve", str(bundle), "--db", str(db),
             "--host", "127.0.0.1", "--port", str(self.port), *extra_args],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/api/test", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start within 30 s")

    def kill(self) -> None:
        """SIGKILL (kill -9): no shutdown handler runs."""
        self.proc.kill()
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def full_page(page: dict, score_of=lambda i, sid: 100 if i == 0 else 40) -> dict:
    """A valid submission for ``page`` (public page dict from the server): first stimulus 100, others 40."""
    return {"ratings": [{"stimulus_id": s["id"], "score": score_of(i, s["id"]), "moved": True}
                        for i, s in enumerate(page["stimuli"])], "page_duration_s": 12.5}


def listen(client, page: dict, base: str = "") -> list:
    """Fetch a page's audio as the page does (reference, then every stimulus); the responses. ``client`` is a
    TestClient (``base`` "") or an httpx client (``base`` the server URL)."""
    responses = [client.get(f"{base}/{page['reference']}")] + [client.get(f"{base}/{s['url']}") for s in page["stimuli"]]
    assert all(r.status_code == 200 for r in responses), [r.status_code for r in responses]
    return responses
