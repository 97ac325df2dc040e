"""The assembled model: step-0 equality with the base DiT, parameter groups, seeds, checkpoint checks."""

from __future__ import annotations

import copy

import pytest
import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.spresso.audio_ae import AudioAE
from codecbench.codecs.spresso.config import load_config
from codecbench.codecs.spresso.dit import DiT
from codecbench.codecs.spresso.model import (
    SPresso,
    load_checkpoint,
    load_stage1,
    parameter_counts,
    save_checkpoint,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run far faster on one torch thread than on two on a shared machine (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    config = load_config("tiny", {"latent_encoder.time_pool": 4})
    base = DiT(config.dit)
    with torch.no_grad():  # a "pretrained" DiT: no zero-initialised layer left
        for p in base.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return config, AudioAE(config.audio_ae).eval(), base.eval()


def test_step0_decoder_equals_base_dit(parts):
    config, ae, base = parts
    model = SPresso(config, copy.deepcopy(ae), copy.deepcopy(base)).eval()
    x0 = torch.randn(2, 128, 40)
    z = model.g_psi(x0)
    noisy, sigma = x0 + 0.7 * torch.randn_like(x0), torch.tensor([0.7, 3.0])
    with torch.no_grad():
        adapted = model.diffusion.denoise(model.dit, noisy, sigma, cond=model.f_phi(z, 40))
        reference = model.diffusion.denoise(base, noisy, sigma)
        torch.testing.assert_close(adapted, reference, rtol=1e-5, atol=1e-6)  # float rounding of memory layouts
        sampled = model.decode_latents(z, 40, seed=3, steps=3)
        noise = torch.randn(128, 40, generator=torch.Generator().manual_seed(3)).expand(2, -1, -1)
        torch.testing.assert_close(sampled, model.diffusion.sample(base, noise, 3), rtol=1e-3, atol=5e-4)
        torch.nn.init.normal_(model.f_phi.linear.weight)  # the check can fail: a non-zero f_phi changes the output
        assert not torch.allclose(model.diffusion.denoise(model.dit, noisy, sigma, cond=model.f_phi(z, 40)), reference)


def test_parameter_groups_and_frozen_parts(parts):
    config, ae, base = parts
    model = SPresso(config, copy.deepcopy(ae), copy.deepcopy(base))
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.stage1_parameters()}
    assert not any(p.requires_grad for p in model.ae.parameters())
    names = {n for n, p in model.dit.named_parameters() if p.requires_grad}
    assert names and all(n.endswith(("lora_a", "lora_b")) for n in names)
    assert {id(p) for p in model.decoder_parameters()} < trainable
    model.train()
    assert not model.ae.training and model.g_psi.training


def test_decode_seed_and_shapes(parts):
    config, ae, base = parts
    model = SPresso(config, copy.deepcopy(ae), copy.deepcopy(base)).eval()
    torch.nn.init.normal_(model.f_phi.linear.weight, std=0.1)
    audio = 0.1 * torch.randn(2, 24000)
    with torch.no_grad():
        z = model.encode(audio)
        assert z.shape == (2, 64, 13)  # 50 AE frames / 4, ceil
        a = model.decode(z, 24000, seed=1, steps=2)
        b = model.decode(z, 24000, seed=1, steps=2)
        c = model.decode(z, 24000, seed=2, steps=2)
        single = model.decode(z[1:], 24000, seed=1, steps=2)
    assert a.shape == (2, 24000)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    torch.testing.assert_close(single[0], a[1], rtol=1e-4, atol=1e-5)  # an item does not depend on its batch


def test_checkpoint_roundtrip_and_refusals(parts, tmp_path):
    config, ae, base = parts
    model = SPresso(config, copy.deepcopy(ae), copy.deepcopy(base))
    path = tmp_path / "stage1.pt"
    save_checkpoint(path, "stage1", config, {"spresso": model.state_dict()}, step=7)
    loaded = load_stage1(path)
    assert loaded.checkpoint_step == 7 and loaded.time_pool == 4
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(ConfigError, match=r"is a 'stage1' checkpoint, expected 'dit'"):
        load_checkpoint(path, "dit")
    other = load_config("tiny", {"latent_encoder.time_pool": 9})
    with pytest.raises(ConfigError, match=r"does not match the config: latent_encoder.time_pool: checkpoint 4 vs config 9"):
        load_checkpoint(path, "stage1", other)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"junk.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt", "stage1")
    with pytest.raises(ConfigError, match=r"missing.pt: S-PRESSO stage1 checkpoint does not exist"):
        load_checkpoint(tmp_path / "missing.pt", "stage1")


def test_paper_size_parameter_counts():
    counts = parameter_counts(load_config("paper"))
    assert 200e6 < counts["dit_base"] < 260e6  # Woosh-Flow-like width 1024 x 12 blocks
    assert counts["lora"] == 12 * 32 * ((1024 + 3072) + (1024 + 1024) + (1024 + 4096) + (4096 + 1024))
    assert counts["f_phi"] == 64 * 1024 + 1024
    assert counts["stage1_trainable"] == counts["g_psi"] + counts["f_phi"] + counts["lora"]


def test_rectified_flow_option_trains_and_decodes():
    from codecbench.codecs.spresso.diffusion import RectifiedFlow
    from codecbench.codecs.spresso.model import build_spresso

    torch.manual_seed(0)
    model = build_spresso(load_config("tiny", {"diffusion.kind": "rectified_flow", "latent_encoder.time_pool": 9}))
    assert isinstance(model.diffusion, RectifiedFlow)
    x0 = torch.randn(2, 128, 30)
    loss = model.stage1_loss(x0, torch.Generator().manual_seed(0), text=torch.randn(2, 1, 16), text_dropout=0.5,
                             has_text=torch.tensor([True, False]))
    loss.backward()
    assert torch.isfinite(loss) and model.f_phi.linear.weight.grad is not None
    with torch.no_grad():
        assert model.decode(model.g_psi(x0), 14400, seed=0, steps=2).shape == (2, 14400)
