"""QINCo2: equals RQ at initialisation, exact beam search, prefix truncation, training beats RQ, persistence."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.spresso import qinco2 as q
from codecbench.codecs.spresso.qinco2 import QINCo2, QINCo2Config, QINCo2TrainConfig


def correlated_gaussian(n: int, dim: int, seed: int) -> torch.Tensor:
    """Correlated Gaussian vectors [n, dim]: a fixed random mixing with decaying scales, plus a non-zero mean."""
    mix_gen = torch.Generator().manual_seed(99)
    mixing = torch.randn(dim, dim, generator=mix_gen) * torch.linspace(1.0, 0.1, dim)
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=gen) @ mixing.T + 3.0


def greedy_rq(x_norm: torch.Tensor, codebooks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference plain RQ: nearest codeword to the residual at every step -> codes [N, M], reconstruction [N, D]."""
    residual, codes = x_norm.clone(), []
    for codebook in codebooks:
        k = torch.cdist(residual, codebook).argmin(-1)
        codes.append(k)
        residual = residual - codebook[k]
    return torch.stack(codes, 1), x_norm - residual


def randomize_networks_(model: QINCo2, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for step in model.steps:
            for p in step.net.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return correlated_gaussian(3000, 8, seed=1), correlated_gaussian(1000, 8, seed=2)


@pytest.fixture(scope="module")
def tiny_config() -> QINCo2Config:
    return QINCo2Config(dim=8, num_steps=3, codebook_size=16, embed_dim=32, hidden_dim=32, num_blocks=1,
                        num_candidates=8, beam_size=8)


@pytest.fixture(scope="module")
def trained(data, tiny_config):
    train, val = data
    settings = QINCo2TrainConfig(epochs=5, batch_size=256, lr=2e-3, warmup_fraction=0.2, kmeans_iters=10, seed=0)
    return q.fit_qinco2(train, tiny_config, settings, val_data=val)


def test_shapes_and_bits(tiny_config, data):
    train, _ = data
    model = q.build_rq(train, tiny_config, kmeans_iters=5)
    codes = model.encode(train[:10])
    assert codes.shape == (10, 3) and codes.dtype == torch.long
    assert model.decode(codes).shape == (10, 8)
    assert model.decode(codes[:, :2]).shape == (10, 8)
    assert model.encode(train[:10], num_steps=2).shape == (10, 2)
    assert tiny_config.bits_per_vector == 12.0
    assert QINCo2Config(dim=64, num_steps=25, codebook_size=4096).bits_per_vector == 300.0


def test_zero_initialised_network_returns_the_codewords():
    net = q.StepNetwork(dim=6, embed_dim=12, hidden_dim=10, num_blocks=3)
    codewords, xhat = torch.randn(5, 4, 6), torch.randn(5, 6)
    assert torch.equal(net(codewords, xhat), codewords)


def test_initial_model_is_residual_quantisation(data, tiny_config):
    """With the k-means RQ initialisation (noise included), greedy encoding and decoding equal plain RQ exactly."""
    train, val = data
    model = QINCo2(tiny_config)
    model.rq_init_(train, kmeans_iters=5, noise=0.1, generator=torch.Generator().manual_seed(3))
    codebooks = [model.first_codebook.detach()] + [s.codebook.detach() for s in model.steps]
    ref_codes, ref_xhat = greedy_rq(model.normalize(val), codebooks)
    codes = model.encode(val, beam_size=1, num_candidates=16)
    assert torch.equal(codes, ref_codes)
    torch.testing.assert_close(model.decode(codes), model.denormalize(ref_xhat), rtol=0, atol=1e-5)
    # pre-selection with A < K keeps the greedy choice (S_m = C_m at init), so A = 1 gives the same codes
    assert torch.equal(model.encode(val, beam_size=1, num_candidates=1), ref_codes)


def test_beam_search_is_exhaustive_when_the_beam_holds_every_path(tiny_config):
    """K = 4, M = 3: with B = 64 and A = K the beam search finds the global best of all 64 code triples."""
    config = QINCo2Config(dim=5, num_steps=3, codebook_size=4, embed_dim=8, hidden_dim=8, num_blocks=1)
    model = QINCo2(config)
    gen = torch.Generator().manual_seed(0)
    model.rq_init_(torch.randn(200, 5, generator=gen), kmeans_iters=3, noise=0.5, generator=gen)
    randomize_networks_(model, seed=4)
    x = torch.randn(20, 5, generator=gen)
    result = model.encode_with_error(x, beam_size=64, num_candidates=4)
    every = torch.tensor(list(itertools.product(range(4), repeat=3)))  # [64, 3]
    for i in range(x.shape[0]):
        errors = (model.decode(every) - x[i]).pow(2).sum(-1)
        best = errors.argmin()
        assert torch.equal(result.codes[i], every[best])
        # the beam's error is in normalised units: divide raw errors by std²
        torch.testing.assert_close(result.sq_error[i], errors[best] / model.data_std**2, rtol=1e-4, atol=1e-5)
    greedy = model.encode_with_error(x, beam_size=1, num_candidates=4)
    assert bool((result.sq_error <= greedy.sq_error + 1e-4).all())


@pytest.mark.slow  # uses the trained fixture (~6 s on 2 shared cores)
def test_training_beats_rq_and_every_truncation_is_usable(trained, data, tiny_config):
    model, history = trained
    train, val = data
    rq = q.build_rq(train, tiny_config, kmeans_iters=10, seed=0)
    rq_mse = rq.prefix_mse(val, rq.encode(val))
    qinco_mse = model.prefix_mse(val, model.encode(val))
    assert qinco_mse[-1] < 0.97 * rq_mse[-1], (qinco_mse, rq_mse)
    assert all(a > b for a, b in zip(qinco_mse, qinco_mse[1:])), qinco_mse  # strictly decreasing in m
    assert history.selected == "qinco2" and history.best_epoch >= 1
    assert history.val_mse_per_step[history.best_epoch - 1] == pytest.approx(qinco_mse)  # the best epoch is kept
    assert history.rq_val_mse_per_step == pytest.approx(rq_mse)
    assert qinco_mse[-1] == pytest.approx(min(v[-1] for v in history.val_mse_per_step))
    assert "kept QINCo2 epoch" in history.note
    assert len(history.train_loss) == 5 and all(v > 0 for v in history.vectors_per_s)


@pytest.mark.slow  # uses the trained fixture (~6 s on 2 shared cores)
def test_larger_search_at_test_time_lowers_the_error(trained, data):
    model, _ = trained
    _, val = data
    small = model.encode_with_error(val, num_candidates=1, beam_size=1).sq_error.mean()
    large = model.encode_with_error(val, num_candidates=16, beam_size=16).sq_error.mean()
    assert large < small


@pytest.mark.slow  # uses the trained fixture (~6 s on 2 shared cores)
def test_fewer_steps_encode_matches_decoding_a_prefix(trained, data):
    model, _ = trained
    _, val = data
    codes2 = model.encode(val[:50], num_steps=2)
    err_direct = (model.decode(codes2) - val[:50]).pow(2).mean()
    err_truncated = (model.decode(model.encode(val[:50])[:, :2]) - val[:50]).pow(2).mean()
    assert err_direct <= err_truncated * 1.02


def test_reset_unused_codewords_redraws_only_unused_rows(tiny_config):
    model = QINCo2(tiny_config)
    with torch.no_grad():
        model.first_codebook.fill_(7.0)
        for step in model.steps:
            step.codebook.fill_(7.0)
            step.preselect.fill_(7.0)
    usage = torch.ones(3, 16, dtype=torch.long)
    usage[0, 2] = 0
    usage[2, 5] = 0
    res_sum = torch.zeros(3, 8, dtype=torch.float64)
    res_sq = torch.full((3, 8), 1e-6, dtype=torch.float64) * 10  # mean 0, std ~ 1e-3 for count 10
    n = q._reset_unused_(model, usage, res_sum, res_sq, 10, torch.Generator().manual_seed(0))
    assert n == 2
    assert model.first_codebook[2].abs().max() < 0.01 and bool((model.first_codebook[3] == 7.0).all())
    assert model.steps[1].codebook[5].abs().max() < 0.01 and model.steps[1].preselect[5].abs().max() < 0.01
    assert bool((model.steps[0].codebook == 7.0).all())


def test_learning_rate_schedule_hand_values():
    f = q.lr_factor
    assert f(0, total=100, warmup=10, final_ratio=1e-3) == pytest.approx(0.1)
    assert f(9, total=100, warmup=10, final_ratio=1e-3) == pytest.approx(1.0)
    assert f(10, total=100, warmup=10, final_ratio=1e-3) == pytest.approx(1.0)
    assert f(55, total=100, warmup=10, final_ratio=1e-3) == pytest.approx(1e-3 + (1 - 1e-3) * 0.5)
    assert f(100, total=100, warmup=10, final_ratio=1e-3) == pytest.approx(1e-3)


def test_normalisation_is_mean_vector_and_scalar_std(tiny_config, data):
    train, _ = data
    model = q.build_rq(train, tiny_config, kmeans_iters=2)
    torch.testing.assert_close(model.data_mean, train.mean(0))
    expected = math.sqrt(float((train - train.mean(0)).pow(2).mean()))
    assert float(model.data_std) == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow  # uses the trained fixture (~6 s on 2 shared cores)
def test_save_load_roundtrip_and_version_check(trained, data, tmp_path):
    model, _ = trained
    _, val = data
    path = model.save(tmp_path / "q.pt", metadata={"frame_rate_hz": 1.0})
    loaded, meta = QINCo2.load_with_metadata(path)
    assert meta == {"frame_rate_hz": 1.0}
    assert torch.equal(loaded.encode(val[:64]), model.encode(val[:64]))
    blob = torch.load(path, weights_only=True)
    blob["format_version"] = 99
    torch.save(blob, tmp_path / "future.pt")
    with pytest.raises(ConfigError, match=r"future\.pt: QINCo2 file format version 99 is not supported"):
        QINCo2.load(tmp_path / "future.pt")
    with pytest.raises(ConfigError, match="QINCo2 file not found"):
        QINCo2.load(tmp_path / "absent.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not a QINCo2 file"):
        QINCo2.load(tmp_path / "other.pt")


def test_bad_inputs_raise_clear_errors(tiny_config, data):
    train, _ = data
    model = q.build_rq(train, tiny_config, kmeans_iters=2)
    with pytest.raises(ConfigError, match=r"expects vectors \[N, 8\], got shape \(4, 7\)"):
        model.encode(torch.zeros(4, 7))
    with pytest.raises(ConfigError, match=r"codes must be integers in \[0, 16\)"):
        model.decode(torch.full((2, 3), 16))
    with pytest.raises(ConfigError, match=r"1 <= m <= 3"):
        model.decode(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ConfigError, match="'beam_size': expected an integer >= 1"):
        model.encode(train[:2], beam_size=0)
    with pytest.raises(ConfigError, match="'num_steps': expected an integer >= 1 and at most 3"):
        model.encode(train[:2], num_steps=4)
    with pytest.raises(ConfigError, match="'codebook_size': expected an integer >= 2"):
        QINCo2Config(dim=8, num_steps=2, codebook_size=1)
    with pytest.raises(ConfigError, match="unknown QINCo2 preset 'XL'"):
        QINCo2Config.preset("XL", dim=8, num_steps=2, codebook_size=16)
    with pytest.raises(ConfigError, match="k-means needs at least K=16 training vectors, got 10"):
        q.build_rq(train[:10], tiny_config)


def test_rq_matches_faiss_residual_quantizer_reference(data, tiny_config):
    """Our plain RQ (greedy) and faiss's ResidualQuantizer (beam 1) reach similar MSE on the same vectors."""
    faiss = pytest.importorskip("faiss", reason="faiss-cpu is an optional dependency (pip install faiss-cpu)")
    train, val = data
    rq = q.build_rq(train, tiny_config, kmeans_iters=20)
    ours = rq.prefix_mse(val, rq.encode(val, beam_size=1, num_candidates=16))[-1]
    reference = faiss.ResidualQuantizer(8, 3, 4)
    reference.max_beam_size = 1
    reference.train(train.numpy())
    decoded = reference.decode(reference.compute_codes(val.numpy()))
    theirs = float(((torch.from_numpy(decoded) - val) ** 2).mean())
    assert ours == pytest.approx(theirs, rel=0.1)


def clustered_latents(num_clips: int, frames: int, dim: int, seed: int, centres: int = 24) -> torch.Tensor:
    """Nearly clustered vectors [num_clips x frames, dim] (tight noise around fixed centres), like real z."""
    gen = torch.Generator().manual_seed(123)
    points = torch.randn(centres, dim, generator=gen) * torch.linspace(1.0, 0.2, dim)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, centres, (num_clips * frames,), generator=gen)
    return points[idx] + 0.05 * torch.randn(num_clips * frames, dim, generator=gen)


@pytest.fixture(scope="module")
def clustered_fit():
    train, val = clustered_latents(24, 50, 16, seed=1), clustered_latents(8, 50, 16, seed=2)
    config = QINCo2Config(dim=16, num_steps=4, codebook_size=32, embed_dim=32, hidden_dim=32, num_blocks=1,
                          num_candidates=8, beam_size=8)
    settings = QINCo2TrainConfig(epochs=3, batch_size=256, kmeans_iters=10, seed=0)
    model, history = q.fit_qinco2(train, config, settings, val_data=val)
    return train, val, config, settings, model, history


def test_never_worse_than_rq_on_clustered_latents(clustered_fit):
    """On nearly clustered latents the noisy init + resets make every trained epoch worse than RQ (measured: 1.43 to
    2.09 x RQ at M); the fit must then return the RQ codebooks and say so."""
    train, val, config, _, model, history = clustered_fit
    rq = q.build_rq(train, config, kmeans_iters=10, seed=0)
    rq_mse, mse = rq.prefix_mse(val, rq.encode(val)), model.prefix_mse(val, model.encode(val))
    assert all(m / r <= 1.0 for m, r in zip(mse, rq_mse)), (mse, rq_mse)
    # the trained epochs really were worse here (otherwise this test would not test the fallback)
    assert all(v[-1] > rq_mse[-1] for v in history.val_mse_per_step)
    assert history.selected == "rq" and history.best_epoch == 0 and "kept the plain RQ codebooks" in history.note
    assert all(float(p.detach().abs().max()) == 0.0 for s in model.steps for p in (s.net.concat.weight, s.net.out_proj.weight))


def test_early_stopping_and_resume_equal_an_uninterrupted_fit(tmp_path, data, tiny_config):
    train, val = data[0][:600], data[1][:200]
    settings = QINCo2TrainConfig(epochs=4, batch_size=128, kmeans_iters=3, lr=2e-3, seed=0, patience=0)
    full, full_history = q.fit_qinco2(train, tiny_config, settings, val_data=val)

    class Stop(Exception):
        pass

    def stop_after_two(line: str) -> None:
        if line.startswith("epoch 2/"):
            raise Stop

    resume = tmp_path / "resume.pt"
    with pytest.raises(Stop):
        q.fit_qinco2(train, tiny_config, settings, val_data=val, resume_path=resume, log=stop_after_two)
    resumed, history = q.fit_qinco2(train, tiny_config, settings, val_data=val, resume_path=resume)
    assert history.resumed_from_epoch == 2 and len(history.train_loss) == 4
    for got, want in zip(history.val_mse_per_step, full_history.val_mse_per_step, strict=True):
        assert got == pytest.approx(want, rel=1e-6)
    for key, value in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)
    with pytest.raises(ConfigError, match="another model or training config"):
        q.fit_qinco2(train, tiny_config, QINCo2TrainConfig(epochs=5, kmeans_iters=3), val_data=val, resume_path=resume)
    # patience 1 with a learning rate too small to improve -> stops after the second epoch
    flat = QINCo2TrainConfig(epochs=6, batch_size=128, kmeans_iters=3, lr=1e-9, seed=0, patience=1,
                             reset_unused=False)
    _, stopped = q.fit_qinco2(train, tiny_config, flat, val_data=val)
    assert stopped.stopped_early and len(stopped.train_loss) < 6
    with pytest.raises(ConfigError, match="'patience': expected an integer >= 0"):
        QINCo2TrainConfig(patience=-1)
    with pytest.raises(ConfigError, match="'selection': expected one of"):
        QINCo2TrainConfig(selection="best")


def test_mean_prefix_selection_requires_every_rate_on_average(data, tiny_config):
    """The trained fixture beats RQ at M but is worse at m = 1 (noisy first codebook); with ``mean_prefix`` the
    selection weighs every prefix (hand values of the score)."""
    assert q.selection_score([3.0, 2.0, 1.0]) == 1.0
    assert q.selection_score([3.0, 2.0, 1.0], "mean_prefix") == 2.0
    assert q.no_worse([3.0, 2.0, 0.9], [2.0, 2.0, 1.0]) and not q.no_worse([3.0, 2.0, 0.9], [2.0, 2.0, 1.0], "mean_prefix")
