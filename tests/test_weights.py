"""One weights helper: sha256 of every loaded weights file in the identity and cache keys (memoised per file),
pinned digests refused with one line naming the file; DAC from a local weights file through a real run."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from codecbench.bench.core import weights
from codecbench.bench.core.errors import ConfigError, WeightsChecksumError
from codecbench.bench.runner import decoded_key
from codecbench.codecs.dac_codec import Dac16kHz
from test_runner import tone_folder


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_file_digest_is_memoised_per_file_and_follows_a_changed_file(tmp_path, monkeypatch):
    path = tmp_path / "w.bin"
    path.write_bytes(b"first")
    first, second = _sha(b"first"), _sha(b"second, longer")
    calls = []
    real = weights.hashlib.sha256
    monkeypatch.setattr(weights.hashlib, "sha256", lambda *a: calls.append(1) or real(*a))
    assert weights.file_digest(path) == first
    assert weights.file_digest(tmp_path / "." / "w.bin") == first  # same file, another spelling
    assert len(calls) == 1  # hashed once; the second ask is a stat
    path.write_bytes(b"second, longer")
    assert weights.file_digest(path) == second and len(calls) == 2


def test_verify_refuses_a_file_that_differs_from_its_pin(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"weights")
    digest = _sha(b"weights")
    assert weights.verify(path, None, "M") == digest == weights.verify(path, digest[:8], "M")
    with pytest.raises(WeightsChecksumError) as error:
        weights.verify(path, "0" * 64, "Model X")
    message = str(error.value)
    assert message.startswith(f"{path}: sha256 {digest} does not match") and "Model X" in message
    assert "\n" not in message
    assert weights.pretrained_status(path) == f"pretrained: model.pth sha256:{digest}"
    assert weights.hub_hash_prefix("encodec_24khz-d7cc33bc.th") == "d7cc33bc"
    assert weights.hub_hash_prefix("weights_16khz_8kbps_0.0.5.pth") is None


def test_weights_file_status_and_pin(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.pt").write_bytes(b"abc")
    good = weights.WeightsFile("M", "f.pt", "https://example.invalid/f.pt", "sub", sha256=_sha(b"abc")[:10])
    assert good.status(str(tmp_path)) == f"pretrained: f.pt sha256:{_sha(b'abc')}"
    assert good.fetch(str(tmp_path)) == tmp_path / "sub" / "f.pt"
    bad = weights.WeightsFile("M", "f.pt", "https://example.invalid/f.pt", "sub", sha256="ffff")
    with pytest.raises(WeightsChecksumError, match="f.pt: sha256 .* does not match the sha256 prefix ffff"):
        bad.fetch(str(tmp_path))
    assert weights.WeightsFile("M", "g.pt", "u", "sub").status(str(tmp_path)) == "missing: g.pt"


def test_encodec_checks_the_hash_its_file_name_carries(tmp_path):
    from codecbench.codecs.encodec_codec import Encodec24kHz

    fake = tmp_path / "encodec" / "encodec_24khz-d7cc33bc.th"
    fake.parent.mkdir()
    fake.write_bytes(b"not the release")
    with pytest.raises(WeightsChecksumError, match=r"encodec_24khz-d7cc33bc.th: sha256 .* prefix d7cc33bc"):
        Encodec24kHz(weights_dir=str(tmp_path))  # checked when the codec is built, before anything is cached
    digest = weights.file_digest(fake)
    codec = Encodec24kHz(weights_dir=str(tmp_path), weights_sha256=digest)  # the user's pin replaces the name's
    assert codec.weights_status() == f"pretrained: {fake.name} sha256:{digest}"
    assert Encodec24kHz(random_init=True, seed=3).weights_status().startswith("random-init (seed=3")


def _tiny_dac_file(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Dac16kHz(random_init=True, config="tiny", seed=seed).model.save(str(path))
    return path


def test_same_name_different_content_gives_different_decoded_keys(tmp_path):
    a = _tiny_dac_file(tmp_path / "a" / "dac_tiny.pth", seed=0)
    b = _tiny_dac_file(tmp_path / "b" / "dac_tiny.pth", seed=1)
    assert a.read_bytes() != b.read_bytes()
    codec_a = Dac16kHz(config="tiny", weights_file=str(a))
    codec_b = Dac16kHz(config="tiny", weights_file=str(b))
    unit = types.SimpleNamespace(point=Dac16kHz.point(n_codebooks=2), sample_rate_hz=48000, channels=1)
    assert codec_a.identity()["weights"] == f"pretrained: dac_tiny.pth sha256:{weights.file_digest(a)}"
    assert decoded_key(unit, codec_a, "clip") != decoded_key(unit, codec_b, "clip")
    assert decoded_key(unit, codec_a, "clip") == decoded_key(unit, Dac16kHz(config="tiny", weights_file=str(a)), "clip")
    # random init keeps its own identity, with the seed
    assert Dac16kHz(random_init=True, config="tiny", seed=4).identity()["weights"].startswith("random-init (seed=4")


def test_dac_weights_file_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="option weights_file: .*missing.pth is not a file"):
        Dac16kHz(weights_file=str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match="random_init: true builds none"):
        Dac16kHz(random_init=True, weights_sha256="ab")
    path = _tiny_dac_file(tmp_path / "dac_tiny.pth", seed=0)
    with pytest.raises(ConfigError, match=r"dac_tiny.pth: a DAC with codebook_size=256, n_codebooks=4; codec "
                       r"'dac_16khz' config 'default' needs codebook_size=1024, n_codebooks=12"):
        Dac16kHz(weights_file=str(path)).model  # noqa: B018


@pytest.mark.slow
def test_dac_local_weights_file_through_a_run(tmp_path):
    from codecbench.bench import api

    a = _tiny_dac_file(tmp_path / "a" / "dac_tiny.pth", seed=0)
    b = _tiny_dac_file(tmp_path / "b" / "dac_tiny.pth", seed=1)
    data = tone_folder(tmp_path / "data", 1)

    def run(name: str, path: Path, **options):
        raw = {"name": "w", "output": str(tmp_path / name), "cache_dir": str(tmp_path / "cache"),
               "dataset": {"path": str(data), "segment_s": 1.0}, "metrics": ["si_sdr"], "report": False,
               "codecs": [{"name": "dac_16khz", "options": {"config": "tiny", "weights_file": str(path), **options},
                           "grid": {"n_codebooks": [2]}}]}
        return api.run(raw, progress=False)

    first = run("run_a", a)
    status = f"pretrained: dac_tiny.pth sha256:{weights.file_digest(a)}"
    assert set(first.table.weights) == {status} and set(first.table.status) == {"ok"}
    manifest = json.loads((first.run_dir / "manifest.json").read_text())
    assert manifest["weights"]["codecs"]["dac_16khz"] == [status]
    assert first.stats["codec_calls"] == 1
    second = run("run_b", b)  # same file name, other content: decoded again, not taken from the cache
    assert second.stats["codec_calls"] == 1
    assert not np.allclose(first.table.value, second.table.value)
    third = run("run_a2", a)  # the first file again: its decodes are in the cache
    assert third.stats["codec_calls"] == 0
    # a pin the file does not match: the codec is not built, a failed row naming the file (decodes of this file in
    # the cache are not used either)
    pinned = run("run_pinned", a, weights_sha256="0" * 64)
    rows = pinned.table[pinned.table.level == "item"]
    assert set(rows.status) == {"failed"} and pinned.stats["codec_calls"] == 0
    assert rows.error.str.contains(f"{a}: sha256 {weights.file_digest(a)} does not match", regex=False).all()
    assert torch.__version__  # the run used the real dac package (imported above)


def test_music2latent_refuses_a_file_that_differs_from_its_pin(tmp_path):
    from codecbench.codecs.music2latent_codec import Music2Latent

    fake = tmp_path / "music2latent" / "music2latent.pt"
    fake.parent.mkdir()
    fake.write_bytes(b"some other checkpoint")
    assert Music2Latent(weights_dir=str(tmp_path)).weights_status() == \
        f"pretrained: music2latent.pt sha256:{_sha(b'some other checkpoint')}"
    with pytest.raises(WeightsChecksumError, match=r"music2latent.pt: sha256 .* does not match the sha256 prefix 1234"):
        Music2Latent(weights_dir=str(tmp_path), weights_sha256="1234")
