"""Training stages on a handful of synthetic 48 kHz clips: each loss decreases, LoRA leaves the base intact,
resume after a kill equals an uninterrupted run, a config mismatch is refused."""

from __future__ import annotations

import copy
import csv

import pytest
import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.spresso.audio_ae import AudioAE, ReconstructionLoss
from codecbench.codecs.spresso.config import load_config
from codecbench.codecs.spresso.data import ClipSource, demo_like_clips
from codecbench.codecs.spresso.diffusion import build_diffusion
from codecbench.codecs.spresso.dit import DiT
from codecbench.codecs.spresso.lora import base_state_dict
from codecbench.codecs.spresso.model import SPresso, load_audio_ae, load_dit, load_stage1
from codecbench.codecs.spresso.train import make_tiny_checkpoint, run_stage, stage1_stage

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run far faster on one torch thread than on two on a shared machine (measured)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny trained S-PRESSO (t = 4) under the session's temp folder (resumes, so shared across modules)."""
    root = tmp_path_factory.getbasetemp() / "spresso-tiny"
    return root, make_tiny_checkpoint(root, time_pool=4)


@pytest.fixture(scope="module")
def eval_audio():
    data = ClipSource.from_arrays(demo_like_clips(4, 2.0, 0))  # the training clips (overfitting)
    return data.batch(4, 24000, seed=123, step=0).audio


def _at_sigma(model: SPresso, x0: torch.Tensor, sigma: float) -> float:
    """x0 MSE of the (conditioned) denoiser at one noise level, fixed noise."""
    s = torch.full((x0.shape[0],), sigma)
    noisy = x0 + s[:, None, None] * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cond = model.f_phi(model.g_psi(x0), x0.shape[-1])
        return float((model.diffusion.denoise(model.dit, noisy, s, cond=cond) - x0).square().mean())


def _diffusion_eval(fn, repeats: int = 16) -> float:
    """Mean denoising loss over fixed generators (so two models see the same sigmas and noise)."""
    with torch.no_grad():
        return sum(float(fn(torch.Generator().manual_seed(1000 + i))) for i in range(repeats)) / repeats


def test_each_stage_loss_decreases(tiny_run, eval_audio, record_property):
    root, stage1_path = tiny_run
    config = load_config("tiny", {"latent_encoder.time_pool": 4})
    torch.manual_seed(0)
    ae_init, ae = AudioAE(config.audio_ae).eval(), load_audio_ae(root / "ae" / "audio_ae.pt")
    mel = ReconstructionLoss(48000)
    with torch.no_grad():
        ae_before, ae_after = float(mel.mel(ae_init(eval_audio), eval_audio)), float(mel.mel(ae(eval_audio), eval_audio))

    x0 = ae.encode(eval_audio).detach()
    diffusion = build_diffusion(config.diffusion)
    torch.manual_seed(0)
    dit_init, dit = DiT(config.dit).eval(), load_dit(root / "dit" / "dit.pt").eval()
    dit_before = _diffusion_eval(lambda g: diffusion.training_loss(dit_init, x0, g))
    dit_after = _diffusion_eval(lambda g: diffusion.training_loss(dit, x0, g))

    step0 = SPresso(config, ae, copy.deepcopy(dit)).eval()  # f_phi = 0: the base DiT
    trained = load_stage1(stage1_path)
    s1_before = _diffusion_eval(lambda g: step0.stage1_loss(x0, g))
    s1_after = _diffusion_eval(lambda g: trained.stage1_loss(x0, g))
    s1_high_before, s1_high_after = _at_sigma(step0, x0, 5.0), _at_sigma(trained, x0, 5.0)
    figures = {"ae_mel": (ae_before, ae_after), "dit": (dit_before, dit_after), "stage1": (s1_before, s1_after),
               "stage1_sigma5": (s1_high_before, s1_high_after)}
    print("\nloss before -> after training:", {k: (round(a, 4), round(b, 4)) for k, (a, b) in figures.items()})
    record_property("spresso_losses", figures)
    assert ae_after < 0.8 * ae_before
    assert dit_after < 0.8 * dit_before
    # the only difference from step 0 is the z path (g_psi, f_phi, LoRA); it matters most at high noise
    assert s1_after < s1_before
    assert s1_high_after < 0.9 * s1_high_before


def test_csv_logs_and_final_files(tiny_run):
    root, _ = tiny_run
    for folder, kind, steps in (("ae", "audio_ae", 60), ("dit", "dit", 150), ("stage1_t4", "stage1", 300)):
        assert (root / folder / f"{kind}.pt").is_file() and (root / folder / "config.yaml").is_file()
        with open(root / folder / "losses.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [int(r["step"]) for r in rows] == list(range(5, steps + 1, 5))
        assert {"loss", "lr", "elapsed_s"} <= set(rows[0])
    with open(root / "ae" / "losses.csv", newline="") as handle:
        assert {"mel", "stft", "adv", "fm", "disc"} <= set(next(csv.DictReader(handle)))


def test_lora_training_left_base_dit_unchanged(tiny_run):
    root, stage1_path = tiny_run
    base = load_dit(root / "dit" / "dit.pt").state_dict()
    trained = load_stage1(stage1_path)
    after = base_state_dict(trained.dit)
    assert after.keys() == base.keys()
    for key in base:
        assert torch.equal(after[key], base[key]), key
    lora_b = [p for n, p in trained.dit.named_parameters() if n.endswith("lora_b")]
    assert lora_b and all(torch.count_nonzero(p) > 0 for p in lora_b)  # the adapters did train
    assert torch.count_nonzero(trained.f_phi.linear.weight) > 0


def _stage1(config, root, data):
    return stage1_stage(config, data, root / "ae" / "audio_ae.pt", root / "dit" / "dit.pt")


def test_resume_after_kill_equals_uninterrupted_run(tiny_run, tmp_path):
    root, _ = tiny_run
    config = load_config("tiny", {"latent_encoder.time_pool": 4, "stage1.checkpoint_every_steps": 2,
                                  "stage1.log_every_steps": 1, "stage1.batch_size": 2})
    data = ClipSource.from_arrays(demo_like_clips(2, 1.0, 5))
    straight = run_stage(_stage1(config, root, data), config, data, tmp_path / "straight", steps=4, progress=False)

    killed = _stage1(config, root, data)
    step_fn = killed.step_fn

    def dies_at_step_3(batch, generator, step):
        if step == 3:
            raise KeyboardInterrupt
        return step_fn(batch, generator, step)

    killed.step_fn = dies_at_step_3
    with pytest.raises(KeyboardInterrupt):
        run_stage(killed, config, data, tmp_path / "resumed", steps=4, progress=False)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["step"] == 3
    resumed = run_stage(_stage1(config, root, data), config, data, tmp_path / "resumed", steps=4, progress=False)

    a, b = load_stage1(straight).state_dict(), load_stage1(resumed).state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6, msg=key)
    with open(tmp_path / "resumed" / "losses.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    with open(tmp_path / "straight" / "losses.csv", newline="") as handle:
        assert [r["loss"] for r in csv.DictReader(handle)] == [r["loss"] for r in rows]

    other = load_config("tiny", {"latent_encoder.time_pool": 9})
    with pytest.raises(ConfigError, match=r"checkpoint.pt: checkpoint does not match the config: latent_encoder.time_pool"):
        run_stage(_stage1(other, root, data), other, data, tmp_path / "resumed", steps=6, progress=False)


def test_finished_stage_is_reused_and_fewer_steps_refused(tiny_run):
    root, stage1_path = tiny_run
    before = stage1_path.stat().st_mtime_ns
    assert make_tiny_checkpoint(root, time_pool=4) == stage1_path
    assert stage1_path.stat().st_mtime_ns == before  # nothing retrained or rewritten
    with pytest.raises(ConfigError, match=r"checkpoint is at step 300, past the requested 10 steps"):
        make_tiny_checkpoint(root, time_pool=4, steps=(60, 150, 10))
