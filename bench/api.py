"""The Python API. The CLI commands are thin wrappers around these functions.

    from codecbench.bench import api
    result = api.run("my-config.yaml")          # or a dict, or a RunConfig
    result.table                                # the tidy results table (pandas)
    api.demo(out="results/demo")                # the built-in demo benchmark
    api.catalogue()                             # the codec catalogue as a table
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from codecbench.bench import config as config_mod
from codecbench.bench import degenerate, rerun
from codecbench.bench import manifest as manifest_mod
from codecbench.bench import results as results_mod
from codecbench.bench.core import weights
from codecbench.bench.core.cache import Cache
from codecbench.bench.datasets import prepare_items
from codecbench.bench.demo_set import DEMO_CONFIG
from codecbench.bench.executors import create as create_executor
from codecbench.bench.grid import expand
from codecbench.bench.records import RunResult, RunStats
from codecbench.bench.runner import execute_unit
from codecbench.bench.status import record_outcome, write_plan
from codecbench.bench.store import RunStore


def _as_config(config: str | Path | Mapping[str, Any] | config_mod.RunConfig) -> config_mod.RunConfig:
    if isinstance(config, config_mod.RunConfig):
        return config
    if isinstance(config, Mapping):
        return config_mod.parse(config, Path.cwd())
    return config_mod.load(config)


def _resolve_dataset(config: config_mod.RunConfig) -> config_mod.RunConfig:
    """``builtin:demo`` -> the demo sounds rendered (once, deterministically) into the cache folder."""
    path = config.dataset.path
    if not path.startswith("builtin:"):
        return config
    name = path.split(":", 1)[1]
    if name != "demo":
        raise config_mod.ConfigError(f"dataset.path: unknown built-in dataset '{path}' (known: builtin:demo)")
    from codecbench.bench.demo_set import write_demo_set

    folder = config.cache_root / f"demo-set-seed{config.seed}"
    write_demo_set(folder, seed=config.seed)
    return dataclasses.replace(config, dataset=dataclasses.replace(config.dataset, path=str(folder)))


def _progress(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="unit", disable=not enabled, dynamic_ncols=True)


def run(
    config: str | Path | Mapping[str, Any] | config_mod.RunConfig,
    out: str | Path | None = None,
    device: str | None = None,
    executor: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    report: bool | None = None,
    recheck: bool = False,
) -> RunResult:
    """Run (or resume) a benchmark: every unit not yet in the run store, then set metrics, table, manifest, report.

    A finished run is recognised unit by unit: rerunning it makes no codec call and no metric computation. A
    finished run without failures, asked again from the same config file with nothing changed, is answered from
    its folder after verifying its outputs (:mod:`codecbench.bench.rerun`; ``recheck``: take the full path).
    """
    from codecbench.bench.core.cache import reset_mismatches

    asked = rerun.request(config, out, device, executor, workers, report)
    if not recheck and (reused := rerun.reuse(asked)) is not None:
        return reused
    reset_mismatches()  # cache entries failing verification: said once per run, counted in the manifest
    started_at, started = manifest_mod.now(), time.perf_counter()
    cfg = _resolve_dataset(_with_overrides(_as_config(config), out, executor, workers, report))
    if cfg.weights_dir:
        weights.use_directory(cfg.weights_dir)
    device_name = config_mod.resolve_device(device or cfg.device)
    rerun.forget(cfg.run_dir)  # the stamp vouches only for outputs it saw: gone before anything is rewritten
    _write_config(cfg)
    items, failures = _prepare_items(cfg)  # 1. clips -> items, in the content-addressed cache
    prepared_s = time.perf_counter() - started
    units, store, totals = _plan_units(cfg, items, failures, device, device_name)  # 2. the grid, in plan.json
    _run_units(cfg, units, store, totals, failures, progress)  # 3. every unit not done, with retries
    units_s = time.perf_counter() - started - prepared_s
    table, entropy_summary = _assemble_table(cfg, units, store, failures, device_name, totals)  # 4. set metrics
    timings = {"prepare": prepared_s, "units": units_s, "total": time.perf_counter() - started}
    manifest_mod.write_run_manifest(cfg, table, totals, device_name, entropy_summary, timings, started_at)  # 5.
    if cfg.report:  # 6. figures and tables
        _report(cfg.run_dir)
    failed_rows = int((table["status"] == "failed").sum())
    rerun.remember(asked, cfg, [item.clip_path for item in items], totals, failed_rows)  # no failure: next is fast
    totals.seconds = time.perf_counter() - started
    return RunResult(run_dir=cfg.run_dir, table=table, stats=totals)


def _with_overrides(cfg: config_mod.RunConfig, out: str | Path | None, executor: str | None, workers: int | None,
                    report: bool | None) -> config_mod.RunConfig:
    """The config with the command line's ``--out``, ``--executor``, ``--workers`` and ``--no-report``."""
    if out is not None:
        cfg = dataclasses.replace(cfg, output=str(out))
    if executor is not None or workers is not None:
        switching = executor is not None and executor != cfg.executor.name
        options = {} if switching else dict(cfg.executor.options)  # another backend: the config's options don't apply
        if workers is not None:
            options["workers"] = workers
        cfg = dataclasses.replace(cfg, executor=config_mod.ExecutorSpec(executor or cfg.executor.name, options))
    if report is not None:
        cfg = dataclasses.replace(cfg, report=report)
    return cfg


def _write_config(cfg: config_mod.RunConfig) -> None:
    from codecbench.bench.faults import write_if_changed

    write_if_changed(cfg.run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())


def _prepare_items(cfg: config_mod.RunConfig) -> tuple[list[Any], list[Any]]:
    """Clips -> items (validated, evaluation format), written once into the content-addressed cache; and the
    input failures (bad clips, and clips an earlier run of the folder used that are gone now)."""
    from codecbench.bench.faults import vanished_clips

    items, failures = prepare_items(cfg.dataset)
    failures = [*failures, *vanished_clips(cfg.run_dir, items, failures)]  # a clip deleted since: a failed row
    cache = Cache(cfg.cache_root)
    for item in items:  # verified (digest and sample hash): a damaged prepared clip is rewritten from its source
        if not cache.has_audio("clips", item.clip_hash, item.clip_hash, item.sample_rate_hz):
            cache.put_audio("clips", item.clip_hash, item.audio, item.sample_rate_hz)
    return items, failures


def _plan_units(cfg: config_mod.RunConfig, items: list[Any], failures: list[Any], device: str | None,
                device_name: str) -> tuple[list[Any], RunStore, RunStats]:
    """The grid's units (written to plan.json with the input failures), the store, and the run's counters."""
    from codecbench.bench.faults import reopen_units_with_new_metrics

    # units carry the requested device ("auto" stays "auto"): each resolves it where it runs (a Slurm GPU node)
    units = expand(cfg, items, device or cfg.device)
    write_plan(cfg.run_dir, units, failures)  # codecbench status reads it (units, and inputs that failed to load)
    store = RunStore(cfg.run_dir)
    reopen_units_with_new_metrics(store, units, cfg, device_name)  # metrics available now that were not then
    cached = sum(1 for u in units if store.done(u.unit_id))
    return units, store, RunStats(units=len(units), units_cached=cached, items=len(items), clips_failed=len(failures))


def _run_units(cfg: config_mod.RunConfig, units: list[Any], store: RunStore, totals: RunStats,
               failures: list[Any], progress: bool) -> None:
    """Every unit not done in the store, on the config's executor; failed units again up to ``retries`` times.
    Counts what ran into ``totals`` (and which units and inputs failed, ``totals.failures``)."""
    todo = [u for u in units if not store.done(u.unit_id)]
    bar = _progress(len(units), f"{cfg.name}", progress)
    bar.update(totals.units_cached)
    bar.set_postfix(done=0, cached=totals.units_cached, failed=0)
    done = 0
    with create_executor(cfg.executor.name, **dict(cfg.executor.options)) as runner:
        for attempt in range(cfg.retries + 1):  # then failed units only, up to `retries` more times
            failed = []
            for unit, outcome in runner.run(execute_unit, todo):
                if not record_outcome(store, unit.unit_id, outcome):  # failures keep their error and log path
                    failed.append(unit)
                    continue
                done += 1
                if isinstance(outcome, dict):
                    totals.codec_calls += int(outcome.get("codec_calls", 0))
                    totals.metric_computations += int(outcome.get("metric_computations", 0))
                bar.update(1)
                bar.set_postfix(done=done, cached=totals.units_cached, failed=len(failed), attempt=attempt + 1)
            todo = failed
            if not todo:
                break
    totals.units_failed = len(todo)
    totals.failures = failure_summary(store, todo, failures)  # which units and inputs failed, and why
    bar.update(len(todo))
    bar.close()


def _assemble_table(cfg: config_mod.RunConfig, units: list[Any], store: RunStore, failures: list[Any],
                    device_name: str, totals: RunStats) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Unit rows + input failure rows, entropy-coded rates, set-level metrics per operating point, degenerate
    flags -> the results table, written (with bitstream_stats.csv) unless the folder already holds it."""
    from codecbench.bench.faults import table_unchanged

    rows = results_mod.unit_rows(units, store) + results_mod.load_failure_rows(cfg.name, failures)
    item_table, entropy_summary = results_mod.add_entropy_coded_rates(results_mod.to_table(rows), cfg)
    set_rows, set_stats = results_mod.set_metric_rows(cfg, item_table, device_name,
                                                      decoded=results_mod.decoded_items(units, store))
    totals.set_computations, totals.set_cached = set_stats["set_computations"], set_stats["set_cached"]
    totals.metric_computations += set_stats["set_computations"]
    table = degenerate.mark(results_mod.to_table(item_table.to_dict("records") + set_rows))
    bitstream_rows = entropy_summary.pop("bitstream_stats", [])
    if not table_unchanged(table, cfg.run_dir):  # a finished run in a read-only folder writes nothing
        results_mod.write(table, cfg.run_dir)
        if bitstream_rows:  # codebook utilisation, perplexity, tokens/s per discrete point (codecs/bitstream_stats.py)
            from codecbench.bench.core.cache import atomic_write_bytes

            atomic_write_bytes(cfg.run_dir / "bitstream_stats.csv",
                               pd.DataFrame(bitstream_rows).to_csv(index=False).encode("utf-8"))
    return table, entropy_summary


def failure_summary(store: RunStore, failed_units: list[Any], input_failures: list[Any]) -> dict[str, Any]:
    """What failed in a run, for the summary and the manifest: each failed unit (codec, point, outcome, attempts,
    first error line) and each input that could not be loaded (recorded once, not retried)."""
    units = []
    for unit in failed_units:
        record = store.read(unit.unit_id) or {}
        units.append({"unit_id": unit.unit_id, "codec": unit.codec, "point": unit.point.label,
                      "items": len(unit.items), "outcome": record.get("outcome", "failed-codec"),
                      "attempts": int(record.get("attempts", 1)),
                      "error": str(record.get("error", "")).splitlines()[0] if record.get("error") else ""})
    inputs = [{"item_id": f.item_id, "clip_path": f.clip_path, "error": str(f.error).splitlines()[0] if f.error else ""}
              for f in input_failures]
    return {"units": units, "inputs": inputs}


def _report(run_dir: Path) -> bool:
    """Build the run's report unless the one there was built from the same table and every file it wrote is
    still there and non-empty (returns whether it built). Files are built in a private staging folder and moved
    into place one by one (atomic renames), then the stamp is written: a kill leaves no half-written file."""
    from codecbench.bench.faults import build_report_atomic

    return build_report_atomic(run_dir)


def demo(
    out: str | Path | None = None,
    device: str | None = None,
    progress: bool = True,
    allow_downloads: bool = False,
    **kwargs: Any,
) -> RunResult:
    """The built-in demo benchmark: classic codecs and BS.1534 anchors on the generated demo set.

    It never downloads (unless ``allow_downloads``): metrics whose weights are absent from the weights directory
    are listed as unavailable, with the file they need, in the manifest and the summary."""
    if not allow_downloads:
        weights.set_offline()
    return run(DEMO_CONFIG, out=out or "results/demo", device=device, progress=progress, **kwargs)


def catalogue(costs: bool = False) -> pd.DataFrame:
    """The codec catalogue: name, kind, native sample rate, operating points with the rates their bitstream
    definition gives (kbps, frame rate, compression ratio for continuous codecs), and weights status.

    Codecs are built with default options; constructors are lazy (no model is loaded to list them). With
    ``costs``, each codec's architecture is built (at random init where no weights are present) for its parameter
    count and algorithmic latency per point; real-time factors are measured by runs (results table)."""
    import math

    from codecbench.codecs import registry

    def number(value: Any) -> float | None:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

    rows = []
    for name in registry.names():
        base = {"codec": name, "source": registry.source(name)}
        try:
            codec = registry.create(name)
            points = codec.operating_points()
            weights_status = codec.weights_status()
        except Exception as error:  # a codec that needs options (or a broken plugin) is listed with the reason
            rows.append({**base, "kind": "?", "point": "(needs options)", "weights": f"{type(error).__name__}: {error}"})
            continue
        info = codec.info
        base.update({"kind": info.kind, "sample_rate_hz": info.sample_rate_hz or "eval rate", "weights": weights_status})
        if not points:
            rows.append({**base, "point": "(set by options)"})
        params_count = None
        if costs:
            try:
                params_count = int(codec.num_parameters())
            except Exception as error:
                params_count = f"{type(error).__name__}: {error}"
        for point in points:
            row = {
                **base,
                "point": point.label,
                "bitrate_kbps": number(codec.nominal_bitrate_kbps(point)),
                "frame_rate_hz": number(codec.frame_rate_hz(point)),
                "compression_ratio": number(codec.compression_ratio(point)),
            }
            if costs:
                try:
                    latency = number(codec.algorithmic_latency_ms(point))
                except Exception:
                    latency = None
                row.update(params_count=params_count, algorithmic_latency_ms=latency)
            rows.append(row)
    columns = ["codec", "kind", "sample_rate_hz", "point", "bitrate_kbps", "frame_rate_hz", "compression_ratio",
               *(["params_count", "algorithmic_latency_ms"] if costs else []), "weights", "source"]
    return pd.DataFrame(rows, dtype=object).reindex(columns=columns)  # object: integer counts stay integers


def status(run_dir: str | Path) -> dict[str, int]:
    """Counts of a run folder's units: done / running / failed / missing (see :mod:`codecbench.bench.status`), and
    ``inputs_failed``: input files that could not be loaded (failed rows, not units; never retried)."""
    from codecbench.bench import status as status_mod

    return {**status_mod.summary(status_mod.unit_states(run_dir)),
            "inputs_failed": len(status_mod.input_failures(run_dir))}
