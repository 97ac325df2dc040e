"""Cached rerun vs first run of the demo benchmark, measured in one go.

    python -m codecbench.bench.benchmarks.demo_rerun [--config PATH]

Runs the config three times into a temporary run folder with a fresh cache, as whole ``codecbench run`` processes
(what a user waits for, interpreter start and imports included): the first run; a rerun (the fast path: nothing
changed, answered from the run folder); a rerun with ``--recheck`` (the full path, every unit and cache entry
verified). Prints the three times, their ratios to the first run, and the work each rerun did (codec calls and metric
computations: both must be 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def main() -> None:
    from codecbench.bench.demo_set import DEMO_CONFIG

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEMO_CONFIG))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = yaml.safe_load(Path(args.config).read_text())
        raw.update(output=str(Path(tmp) / "run"), cache_dir=str(Path(tmp) / "cache"))
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        env = {**os.environ, "CODECBENCH_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        seconds, manifests = [], []
        for extra in ([], [], ["--recheck"]):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "codecbench.bench.cli", "run", str(config), "--quiet", *extra],
                           check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            seconds.append(time.perf_counter() - started)
            manifests.append(json.loads((Path(tmp) / "run" / "manifest.json").read_text()))
        counts = manifests[0]["counts"]
        print(f"config: {args.config}  ({counts['units']} units, {counts['items']} items, cpus: {os.cpu_count()})")
        print(f"first run:          {seconds[0]:7.2f} s (whole process)")
        for label, second, manifest in (("rerun (fast path): ", seconds[1], manifests[1]),
                                        ("rerun --recheck:   ", seconds[2], manifests[2])):
            counts = manifest["counts"]
            print(f"{label}{second:7.2f} s (whole process; run work {manifest['timings_s']['total']:.2f} s); "
                  f"ratio to first run {second / seconds[0]:.3f}; {counts['codec_calls']} codec calls, "
                  f"{counts['metric_computations']} metric computations, {counts['units_cached']}/{counts['units']} "
                  f"units cached{'; ' + manifest['rerun'].split(':')[0] if 'rerun' in manifest else ''}")


if __name__ == "__main__":
    main()
