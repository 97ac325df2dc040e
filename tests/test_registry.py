"""The codec registry: built-in catalogue, third-party codecs through a real entry point, name errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from codecbench.bench.core.errors import CodecbenchError, UnknownNameError
from codecbench.codecs import registry

PLUGIN = textwrap.dedent('''
    import torch
    from codecbench.codecs.base import Codec, CodeBitstream, CodecInfo, CodeStream, ParamSpec

    class HalfCodec(Codec):
        """Keeps every second sample as 8-bit codes (a third-party codec for the entry-point test)."""

        info = CodecInfo("half_plugin", "classic", 8000, 1, "third-party test codec")
        params = (ParamSpec("bits", int, 2, 8),)
        default_points = ({"bits": 8},)

        def nominal_bitrate_kbps(self, point):
            return 8.0 * point["bits"]

        def encode(self, audio, point):
            levels = 2 ** point["bits"]
            codes = torch.clamp(((audio + 1) / 2 * (levels - 1)).round(), 0, levels - 1).long()
            return [CodeBitstream(8000, audio.shape[-1], streams=(CodeStream(codes[i, 0].numpy(), levels, 8000.0),))
                    for i in range(audio.shape[0])]

        def decode(self, bitstreams, point):
            levels = 2 ** point["bits"]
            return torch.stack([torch.from_numpy(b.streams[0].codes).float()[None] / (levels - 1) * 2 - 1
                                for b in bitstreams])
''')


@pytest.fixture
def plugin_path(tmp_path):
    """A distribution installed the way pip leaves it: a package and its dist-info with entry_points.txt."""
    (tmp_path / "half_plugin_pkg").mkdir()
    (tmp_path / "half_plugin_pkg" / "__init__.py").write_text(PLUGIN)
    info = tmp_path / "half_plugin_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: half-plugin-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[codecbench.codecs]\nhalf_plugin = half_plugin_pkg:HalfCodec\n")
    (info / "RECORD").write_text("")
    return tmp_path


def _cli(args, extra_path=None, cwd=None):
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "codecbench.bench.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_builtins_are_listed_and_load():
    names = registry.names()
    assert {"reference", "lowpass_3k5", "lowpass_7k", "opus", "mp3"} <= set(names)
    assert registry.get("opus").info.name == "opus" and registry.source("opus") == "built-in"
    assert {c.info.name for c in registry.classes(is_anchor=True)} >= {"reference", "lowpass_3k5", "lowpass_7k"}


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(UnknownNameError, match=r"unknown codec 'opsu'. Did you mean 'opus'\? Known: .*mp3"):
        registry.get("opsu")


def test_duplicate_name_raises():
    with pytest.raises(CodecbenchError, match="registered twice"):
        registry.register("opus", registry.get("opus"))


@pytest.mark.slow
def test_third_party_codec_through_entry_point_is_catalogued_and_runs(plugin_path, tmp_path):
    listing = _cli(["codecs", "--csv"], extra_path=plugin_path)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("half_plugin,"))
    assert "64.0" in row and "entry point of half-plugin-pkg" in row
    config = tmp_path / "plugin.yaml"
    config.write_text(textwrap.dedent(f"""
        name: plugin-run
        output: {tmp_path / 'run'}
        dataset: {{path: builtin:demo, max_clips: 2}}
        codecs: [{{name: half_plugin, grid: {{bits: [4, 8]}}}}]
        metrics: [si_sdr]
        report: false
    """))
    run = _cli(["run", str(config), "--quiet"], extra_path=plugin_path)
    assert run.returncode == 0, run.stderr
    import pandas as pd

    table = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert set(table.codec) == {"half_plugin"} and set(table.status) == {"ok"}
    assert sorted(table.bitrate_kbps.unique()) == [32.0, 64.0]  # 8 kHz x bits, from the codes produced


def test_cli_bad_config_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndataset: {path: builtin:demo}\ncodecs: [{name: opsu}]\n")
    result = _cli(["run", str(bad)])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codecbench: error: codecs[0].name: unknown codec 'opsu'")
    assert "Did you mean 'opus'" in lines[0]


def test_cli_help_everywhere():
    for args in (["--help"], ["demo", "--help"], ["run", "--help"], ["codecs", "--help"]):
        result = _cli(args)
        assert result.returncode == 0 and "usage: codecbench" in result.stdout, (args, result.stderr)


def _row(table, codec, point):
    return table[(table.codec == codec) & (table.point == point)].iloc[0]


def test_catalogue_rates_are_computed_from_the_bitstream_definitions():
    from codecbench.bench import api

    table = api.catalogue()
    assert _row(table, "dac_44khz", "n_codebooks=2").bitrate_kbps == pytest.approx(44_100 / 512 * 2 * 10 / 1000)
    assert _row(table, "encodec_24khz", "bandwidth_kbps=6.0").bitrate_kbps == pytest.approx(6.0)
    assert _row(table, "spresso", "seed=0,time_pool=100").compression_ratio == pytest.approx(750.0)
    assert _row(table, "spresso_discrete", "num_steps=0,paper_kbps=1.32,seed=0").bitrate_kbps == pytest.approx(4 / 3)
    assert _row(table, "opus", "bitrate_kbps=12").frame_rate_hz == pytest.approx(50.0)
    assert _row(table, "dac_44khz", "n_codebooks=2").weights.startswith("missing: weights_44khz")
    assert _row(table, "precomputed", "(set by options)").kind == "precomputed"


@pytest.mark.slow
def test_catalogue_costs_build_architectures():
    from codecbench.bench import api

    table = api.catalogue(costs=True)
    assert _row(table, "opus", "bitrate_kbps=12").algorithmic_latency_ms == pytest.approx(26.5)
    assert _row(table, "opus", "bitrate_kbps=12").params_count == 0
    assert _row(table, "dac_44khz", "n_codebooks=2").params_count == 76_651_890
