"""QINCo2: residual quantisation with implicit neural codebooks (Vallaeys et al., ICLR 2025), from the method text.

Shapes: N vectors, D vector dim, M steps (codebooks), K codewords per step, B beam size, A candidates per beam
entry, d_e / d_h the step network's embedding and hidden widths, L its residual blocks.

How it works (paper-notes section 5.2):

- Step 1 is a plain codebook ``C_1`` [K, D]. Every later step m has a base codebook ``C_m`` [K, D] and a network
  ``f_m`` that adapts a codeword to the current partial reconstruction x̂: ``c' = c + f_m(c, x̂)``. The network's
  concatenation layer, the down-projections of its residual blocks and its output projection are zero-initialised,
  so an untrained model *is* residual quantisation (RQ) with its codebooks.
- Candidate pre-selection: a cheap static codebook ``S_m`` [K, D] ranks all K codewords against the residual
  x − x̂; only the top A go through the network. ``S_m`` is trained with its own MSE on the chosen codes.
- Beam search keeps the B best partial reconstructions; each step scores the B·A expansions by ‖x − (x̂ + c')‖².
  A and B are arguments of :meth:`QINCo2.encode`, so they can be raised at test time.
- Training (:func:`fit_qinco2`): codebooks from a k-means RQ (plus 10 % noise); data normalised by a mean vector
  and a scalar std; codes computed by the model itself (beam search, no gradient); loss = sum over m of the MSE
  of the m-step prefix reconstruction, plus the pre-selection codebooks' MSE; codewords unused during an epoch are
  re-drawn from that step's residual statistics; AdamW, gradient clipping, linear warm-up then cosine decay.

Files written by :meth:`QINCo2.save` carry ``format_version``; :meth:`QINCo2.load` refuses unknown versions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from codecbench.bench.core.errors import ConfigError
from torch import nn

FORMAT_NAME = "codecbench.qinco2"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QINCo2Config:
    """Size of a QINCo2 model. ``num_candidates`` (A) and ``beam_size`` (B) are the training-time search settings.

    Presets follow the QINCo2 paper (S, M, L: L / d_e / d_h = 2/128/256, 4/384/384, 16/384/384, A = 16, B = 32);
    the paper's K = 256 is replaced by the codebook size S-PRESSO needs (inferred K = 4096, notes section 5.1).
    """

    dim: int
    num_steps: int
    codebook_size: int
    embed_dim: int = 384
    hidden_dim: int = 384
    num_blocks: int = 4
    num_candidates: int = 16
    beam_size: int = 32

    def __post_init__(self) -> None:
        for name in ("dim", "num_steps", "embed_dim", "hidden_dim", "num_candidates", "beam_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"QINCo2 config '{name}': expected a positive integer, got {value!r}")
        if not isinstance(self.num_blocks, int) or self.num_blocks < 0:
            raise ConfigError(f"QINCo2 config 'num_blocks': expected an integer >= 0, got {self.num_blocks!r}")
        if not isinstance(self.codebook_size, int) or self.codebook_size < 2:
            raise ConfigError(f"QINCo2 config 'codebook_size': expected an integer >= 2, got {self.codebook_size!r}")

    @property
    def bits_per_vector(self) -> float:
        """M x log2 K: the fixed-length code size of one vector."""
        return self.num_steps * math.log2(self.codebook_size)

    @classmethod
    def preset(cls, name: str, *, dim: int, num_steps: int, codebook_size: int) -> QINCo2Config:
        """Named sizes: ``S``, ``M``, ``L`` (the QINCo2 paper's) and ``tiny`` (tests, CPU)."""
        presets = {
            "tiny": dict(embed_dim=32, hidden_dim=32, num_blocks=1, num_candidates=8, beam_size=8),
            "S": dict(embed_dim=128, hidden_dim=256, num_blocks=2, num_candidates=16, beam_size=32),
            "M": dict(embed_dim=384, hidden_dim=384, num_blocks=4, num_candidates=16, beam_size=32),
            "L": dict(embed_dim=384, hidden_dim=384, num_blocks=16, num_candidates=16, beam_size=32),
        }
        if name not in presets:
            raise ConfigError(f"unknown QINCo2 preset {name!r}; choices: {sorted(presets)}")
        return cls(dim=dim, num_steps=num_steps, codebook_size=codebook_size, **presets[name])


@dataclass(frozen=True)
class QINCo2TrainConfig:
    """Training settings. Defaults are the QINCo2 paper's optimiser (AdamW lr 8e-4, wd 0.1, clip 0.1, batch 1024,
    warm-up over the first 5 % (3 of 60 epochs), cosine down to 1e-3 x lr); ``epochs`` and ``vectors_per_epoch`` must be sized to the data
    (the paper: 60 epochs of 10M vectors)."""

    epochs: int = 60
    vectors_per_epoch: int | None = None  # None: one pass over the data
    batch_size: int = 1024
    lr: float = 8e-4
    weight_decay: float = 0.1
    grad_clip: float = 0.1
    warmup_fraction: float = 0.05  # the paper: 3 warm-up epochs of 60
    final_lr_ratio: float = 1e-3
    kmeans_iters: int = 20
    init_noise: float = 0.1
    reset_unused: bool = True
    seed: int = 0
    patience: int = 10  # epochs without a held-out improvement before stopping (0: never stop early)
    selection: str = "last_step"  # held-out score: "last_step" (MSE at M) or "mean_prefix"

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ConfigError(f"QINCo2 training 'selection': expected one of {SELECTIONS}, got {self.selection!r}")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ConfigError(f"QINCo2 training 'patience': expected an integer >= 0, got {self.patience!r}")
        for name in ("epochs", "batch_size", "kmeans_iters"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"QINCo2 training '{name}': expected a positive integer, got {value!r}")
        for name in ("lr", "grad_clip"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"QINCo2 training '{name}': must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"QINCo2 training 'warmup_fraction': must lie in [0, 1), got {self.warmup_fraction}")


# --------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------


def squared_distances(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """‖x − c‖² for every codeword: x [..., D], codebook [K, D] -> [..., K] (clamped at 0)."""
    cross = x @ codebook.T
    return (x.pow(2).sum(-1, keepdim=True) - 2 * cross + codebook.pow(2).sum(-1)).clamp_min_(0.0)


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@torch.no_grad()
def kmeans(data: torch.Tensor, k: int, *, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means: data [N, D] -> centroids [k, D]; empty clusters are re-seeded on random points."""
    n = data.shape[0]
    if n < k:
        raise ConfigError(f"k-means needs at least K={k} training vectors, got {n}")
    centroids = data[torch.randperm(n, generator=generator)[:k]].clone()
    chunk = max(1, 2**22 // k)
    for _ in range(iters):
        assign = torch.cat([squared_distances(data[s], centroids).argmin(-1) for s in _chunks(n, chunk)])
        sums = torch.zeros_like(centroids).index_add_(0, assign, data)
        counts = torch.bincount(assign, minlength=k).to(data.dtype)
        empty = counts == 0
        centroids = sums / counts.clamp_min(1)[:, None]
        if empty.any():
            centroids[empty] = data[torch.randint(0, n, (int(empty.sum()),), generator=generator)]
    return centroids


# --------------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------------


class ResidualBlock(nn.Module):
    """h + W_down(relu(W_up h)), W_down zero-initialised: [..., d_e] -> [..., d_e]."""

    def __init__(self, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.up = nn.Linear(embed_dim, hidden_dim)
        self.down = nn.Linear(hidden_dim, embed_dim)
        nn.init.zeros_(self.down.weight)
        nn.init.zeros_(self.down.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.down(F.relu(self.up(h)))


class StepNetwork(nn.Module):
    """f_m: adapts base codewords to the partial reconstruction; returns c' (not the correction).

    codewords [..., A, D], xhat [..., D] -> adapted codewords [..., A, D]. The concatenation layer
    Linear([e, x̂]) is applied as two matrix products so the x̂ half is computed once per beam entry.
    """

    def __init__(self, dim: int, embed_dim: int, hidden_dim: int, num_blocks: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.in_proj = nn.Linear(dim, embed_dim)
        self.concat = nn.Linear(embed_dim + dim, embed_dim)
        self.blocks = nn.ModuleList(ResidualBlock(embed_dim, hidden_dim) for _ in range(num_blocks))
        self.out_proj = nn.Linear(embed_dim, dim)
        for layer in (self.concat, self.out_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, codewords: torch.Tensor, xhat: torch.Tensor) -> torch.Tensor:
        e = self.in_proj(codewords)
        w_e, w_x = self.concat.weight[:, : self.embed_dim], self.concat.weight[:, self.embed_dim :]
        h = e + F.linear(e, w_e) + F.linear(xhat, w_x, self.concat.bias).unsqueeze(-2)
        for block in self.blocks:
            h = block(h)
        return codewords + self.out_proj(h)


class QINCo2Step(nn.Module):
    """One step m >= 2: base codebook C_m [K, D], pre-selection codebook S_m [K, D] and network f_m."""

    def __init__(self, config: QINCo2Config):
        super().__init__()
        self.codebook = nn.Parameter(torch.zeros(config.codebook_size, config.dim))
        self.preselect = nn.Parameter(torch.zeros(config.codebook_size, config.dim))
        self.net = StepNetwork(config.dim, config.embed_dim, config.hidden_dim, config.num_blocks)

    def adapt(self, codes: torch.Tensor, xhat: torch.Tensor) -> torch.Tensor:
        """Adapted codewords: codes [..., A] (int), xhat [..., D] -> [..., A, D]."""
        return self.net(self.codebook[codes], xhat)


@dataclass
class EncodeResult:
    """codes [N, m] int64 and the squared error ‖x − x̂‖² of each vector in normalised units [N]."""

    codes: torch.Tensor
    sq_error: torch.Tensor


@dataclass
class QINCo2Losses:
    """``prefix_mse``: sum over m of the m-step prefix reconstruction's MSE per element (normalised units);
    ``preselect_mse``: sum over steps >= 2 of the MSE of S_m[k_m] against the residual x − x̂_{m−1};
    ``prefixes``: the M prefix reconstructions [N, D] (normalised)."""

    prefix_mse: torch.Tensor
    preselect_mse: torch.Tensor
    prefixes: list[torch.Tensor]

    @property
    def total(self) -> torch.Tensor:
        return self.prefix_mse + self.preselect_mse


class QINCo2(nn.Module):
    """QINCo2 quantiser. Public API works on raw vectors [N, D]; normalisation is internal.

    - :meth:`encode` x [N, D] -> codes [N, m] (beam search, no gradient; A, B, m settable per call);
    - :meth:`decode` codes [N, m] -> x̂ [N, D] for any prefix length m <= M;
    - :meth:`prefix_mse` the MSE of every truncation m = 1..M of the same codes.
    """

    def __init__(self, config: QINCo2Config):
        super().__init__()
        self.config = config
        self.first_codebook = nn.Parameter(torch.zeros(config.codebook_size, config.dim))
        self.steps = nn.ModuleList(QINCo2Step(config) for _ in range(config.num_steps - 1))
        self.register_buffer("data_mean", torch.zeros(config.dim))
        self.register_buffer("data_std", torch.ones(()))

    # -- normalisation ----------------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.data_mean) / self.data_std

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.data_std + self.data_mean

    def _check_vectors(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ConfigError(f"QINCo2 expects vectors [N, {self.config.dim}], got shape {tuple(x.shape)}")
        return x.to(self.data_mean.device, torch.float32)

    # -- initialisation -------------------------------------------------------------------------------------
    @torch.no_grad()
    def rq_init_(self, data: torch.Tensor, *, kmeans_iters: int, noise: float, generator: torch.Generator) -> None:
        """Set the normalisation from data [N, D], then every codebook from a k-means RQ on it (+ noise x std)."""
        data = self._check_vectors(data)
        self.data_mean.copy_(data.mean(0))
        self.data_std.copy_((data - self.data_mean).pow(2).mean().sqrt().clamp_min(1e-8))
        residual = self.normalize(data)
        for m in range(self.config.num_steps):
            centroids = kmeans(residual, self.config.codebook_size, iters=kmeans_iters, generator=generator)
            assign = squared_distances(residual, centroids).argmin(-1)
            residual = residual - centroids[assign]
            if noise > 0:
                scale = noise * centroids.std()
                centroids = centroids + scale * torch.randn(centroids.shape, generator=generator)
            if m == 0:
                self.first_codebook.copy_(centroids)
            else:
                self.steps[m - 1].codebook.copy_(centroids)
                self.steps[m - 1].preselect.copy_(centroids)

    # -- encoding ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _beam_search(self, x: torch.Tensor, num_steps: int, num_candidates: int, beam_size: int) -> EncodeResult:
        """x [n, D] normalised -> best codes [n, num_steps] and their squared error [n]."""
        n, k = x.shape[0], self.config.codebook_size
        beam = min(beam_size, k)
        err, idx = squared_distances(x, self.first_codebook).topk(beam, dim=-1, largest=False)  # [n, B]
        codes = idx.unsqueeze(-1)  # [n, B, 1]
        xhat = self.first_codebook[idx]  # [n, B, D]
        for step in self.steps[: num_steps - 1]:
            a = min(num_candidates, k)
            cand = squared_distances(x.unsqueeze(1) - xhat, step.preselect).topk(a, dim=-1, largest=False).indices
            new = xhat.unsqueeze(2) + step.adapt(cand, xhat)  # [n, B, A, D]
            err = (x[:, None, None] - new).pow(2).sum(-1).flatten(1)  # [n, B*A]
            keep = min(beam_size, err.shape[1])
            err, flat = err.topk(keep, dim=-1, largest=False)  # [n, B']
            parent = torch.div(flat, a, rounding_mode="floor")
            chosen = cand.flatten(1).gather(1, flat)
            codes = torch.cat([codes.gather(1, parent[..., None].expand(-1, -1, codes.shape[-1])), chosen[..., None]], -1)
            xhat = new.flatten(1, 2).gather(1, flat[..., None].expand(-1, -1, x.shape[1]))
        best = err.argmin(-1)
        rows = torch.arange(n, device=x.device)
        return EncodeResult(codes=codes[rows, best], sq_error=err[rows, best])

    @torch.no_grad()
    def encode(
        self,
        x: torch.Tensor,
        *,
        num_candidates: int | None = None,
        beam_size: int | None = None,
        num_steps: int | None = None,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        """Codes of raw vectors x [N, D] -> [N, m] int64 (m = ``num_steps``, default M), in chunks of vectors.

        ``num_candidates`` (A) and ``beam_size`` (B) default to the training values of the config.
        ``num_steps`` m < M runs the beam search for an m-step code (the model's first m steps).
        """
        return self.encode_with_error(
            x, num_candidates=num_candidates, beam_size=beam_size, num_steps=num_steps, chunk_size=chunk_size
        ).codes

    @torch.no_grad()
    def encode_with_error(
        self,
        x: torch.Tensor,
        *,
        num_candidates: int | None = None,
        beam_size: int | None = None,
        num_steps: int | None = None,
        chunk_size: int | None = None,
    ) -> EncodeResult:
        cfg = self.config
        a = cfg.num_candidates if num_candidates is None else num_candidates
        b = cfg.beam_size if beam_size is None else beam_size
        m = cfg.num_steps if num_steps is None else num_steps
        for name, value, high in (("num_candidates", a, None), ("beam_size", b, None), ("num_steps", m, cfg.num_steps)):
            if not isinstance(value, int) or value < 1 or (high is not None and value > high):
                limit = f" and at most {high}" if high is not None else ""
                raise ConfigError(f"QINCo2 encode '{name}': expected an integer >= 1{limit}, got {value!r}")
        x = self.normalize(self._check_vectors(x))
        if chunk_size is None:  # bound the [n, B, A, max(K, d_h, D)] work tensors to ~16M floats
            width = max(cfg.codebook_size, min(a, cfg.codebook_size) * max(cfg.hidden_dim, cfg.embed_dim, cfg.dim))
            chunk_size = max(1, 2**24 // (min(b, cfg.codebook_size) * width))
        results = [self._beam_search(x[s], m, a, b) for s in _chunks(x.shape[0], chunk_size)]
        if not results:
            empty = torch.zeros(0, m, dtype=torch.long, device=x.device)
            return EncodeResult(codes=empty, sq_error=torch.zeros(0, device=x.device))
        return EncodeResult(codes=torch.cat([r.codes for r in results]), sq_error=torch.cat([r.sq_error for r in results]))

    # -- decoding ---------------------------------------------------------------------------------------------
    def _check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        codes = torch.as_tensor(codes, device=self.data_mean.device)
        if codes.ndim != 2 or not 1 <= codes.shape[1] <= self.config.num_steps:
            raise ConfigError(
                f"QINCo2 expects codes [N, m] with 1 <= m <= {self.config.num_steps}, got shape {tuple(codes.shape)}"
            )
        if codes.dtype.is_floating_point or (codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codebook_size)):
            raise ConfigError(f"QINCo2 codes must be integers in [0, {self.config.codebook_size})")
        return codes.long()

    def decode_prefixes(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """Normalised reconstructions of every prefix: codes [N, m] -> m tensors [N, D] (differentiable)."""
        codes = self._check_codes(codes)
        xhat = self.first_codebook[codes[:, 0]]
        out = [xhat]
        for j, step in enumerate(self.steps[: codes.shape[1] - 1]):
            xhat = xhat + step.adapt(codes[:, j + 1 : j + 2], xhat).squeeze(-2)
            out.append(xhat)
        return out

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, chunk_size: int = 65536) -> torch.Tensor:
        """Raw-unit reconstruction of codes [N, m] (any prefix length m <= M) -> [N, D]."""
        codes = self._check_codes(codes)
        if codes.shape[0] == 0:
            return torch.zeros(0, self.config.dim, device=codes.device)
        return torch.cat([self.denormalize(self.decode_prefixes(codes[s])[-1]) for s in _chunks(codes.shape[0], chunk_size)])

    @torch.no_grad()
    def prefix_mse(self, x: torch.Tensor, codes: torch.Tensor) -> list[float]:
        """MSE per element, raw units, of the truncations m = 1..m_max of ``codes`` [N, m_max] for x [N, D]."""
        x = self._check_vectors(x)
        sums = torch.zeros(codes.shape[1], dtype=torch.float64)
        for s in _chunks(x.shape[0], 65536):
            for m, xhat in enumerate(self.decode_prefixes(codes[s])):
                sums[m] += (self.denormalize(xhat) - x[s]).double().pow(2).sum()
        return (sums / x.numel()).tolist()

    # -- training losses ------------------------------------------------------------------------------------
    def losses(self, x_norm: torch.Tensor, codes: torch.Tensor) -> QINCo2Losses:
        """Losses for normalised x [N, D] and its codes [N, M] (see :class:`QINCo2Losses`)."""
        prefixes = self.decode_prefixes(codes)
        prefix = sum(F.mse_loss(xhat, x_norm) for xhat in prefixes)
        pre = x_norm.new_zeros(())
        for j, step in enumerate(self.steps[: codes.shape[1] - 1]):
            residual = (x_norm - prefixes[j]).detach()
            pre = pre + F.mse_loss(step.preselect[codes[:, j + 1]], residual)
        return QINCo2Losses(prefix_mse=prefix, preselect_mse=pre, prefixes=prefixes)

    # -- persistence ----------------------------------------------------------------------------------------
    def save(self, path: str | Path, metadata: dict | None = None) -> Path:
        """Write config, weights and metadata (JSON-like values) with the format version; atomic rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "config": asdict(self.config),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "metadata": dict(metadata or {}),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(blob, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> QINCo2:
        """Read a file written by :meth:`save`; unknown formats or versions raise :class:`ConfigError` naming it."""
        model, _ = cls.load_with_metadata(path, device)
        return model

    @classmethod
    def load_with_metadata(cls, path: str | Path, device: str = "cpu") -> tuple[QINCo2, dict]:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: QINCo2 file not found")
        try:
            blob = torch.load(path, map_location=device, weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file is reported the same way
            raise ConfigError(f"{path}: not a readable QINCo2 file ({error})") from error
        if not isinstance(blob, dict) or blob.get("format") != FORMAT_NAME:
            raise ConfigError(f"{path}: not a QINCo2 file (expected format '{FORMAT_NAME}')")
        if blob.get("format_version") != FORMAT_VERSION:
            raise ConfigError(
                f"{path}: QINCo2 file format version {blob.get('format_version')!r} is not supported; "
                f"this codecbench reads version {FORMAT_VERSION}"
            )
        model = cls(QINCo2Config(**blob["config"])).to(device)
        model.load_state_dict(blob["state_dict"])
        return model.eval(), blob.get("metadata", {})

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# --------------------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------------------


@dataclass
class FitHistory:
    """Per-epoch training record: loss (sum of prefix MSEs, normalised units), validation MSE per m (raw units),
    codewords reset, seconds; and the selection: ``rq_val_mse_per_step`` (plain k-means RQ, the initialisation
    without noise), ``best_epoch`` (1-based; 0 = RQ kept), ``selected`` (``"qinco2"`` or ``"rq"``), ``stopped_early``,
    ``resumed_from_epoch`` and a one-line ``note`` saying what was kept and why."""

    train_loss: list[float] = field(default_factory=list)
    val_mse_per_step: list[list[float]] = field(default_factory=list)
    reset_codewords: list[int] = field(default_factory=list)
    epoch_s: list[float] = field(default_factory=list)
    vectors_per_s: list[float] = field(default_factory=list)
    rq_val_mse_per_step: list[float] = field(default_factory=list)
    best_epoch: int = 0
    selected: str = "qinco2"
    stopped_early: bool = False
    resumed_from_epoch: int = 0
    note: str = ""


SELECTIONS = ("last_step", "mean_prefix")


def selection_score(mse_per_step: list[float], selection: str = "last_step") -> float:
    """The held-out score a fit minimises: ``last_step`` the MSE with all M steps (the model's rate), or
    ``mean_prefix`` the mean over m of the m-step prefix MSE (when lower prefixes are sent too)."""
    if selection == "mean_prefix":
        return float(sum(mse_per_step) / len(mse_per_step))
    return float(mse_per_step[-1])


def no_worse(candidate: list[float], reference: list[float], selection: str = "last_step") -> bool:
    """True when ``candidate`` (MSE per m) is no worse than ``reference`` at M steps (and, for ``mean_prefix``,
    on average over m)."""
    ok = candidate[-1] <= reference[-1]
    return ok and (selection != "mean_prefix" or selection_score(candidate, selection) <= selection_score(reference, selection))


def build_rq(data: torch.Tensor, config: QINCo2Config, *, kmeans_iters: int = 20, seed: int = 0) -> QINCo2:
    """A plain residual quantiser: an untrained QINCo2 with k-means RQ codebooks and no noise (networks = 0)."""
    model = QINCo2(config)
    generator = torch.Generator().manual_seed(seed)
    model.rq_init_(data.cpu().float(), kmeans_iters=kmeans_iters, noise=0.0, generator=generator)
    return model.eval()


def lr_factor(iteration: int, *, total: int, warmup: int, final_ratio: float) -> float:
    """Linear warm-up over ``warmup`` iterations, then cosine from 1 to ``final_ratio`` at ``total``."""
    if warmup > 0 and iteration < warmup:
        return (iteration + 1) / warmup
    progress = min(1.0, (iteration - warmup) / max(1, total - warmup))
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def _reset_unused_(model: QINCo2, usage: torch.Tensor, res_sum: torch.Tensor, res_sq: torch.Tensor, count: int,
                   generator: torch.Generator) -> int:
    """Re-draw codewords unused this epoch from N(mean, std) of that step's residuals; returns how many."""
    total = 0
    mean = res_sum / max(count, 1)
    std = (res_sq / max(count, 1) - mean.pow(2)).clamp_min(0).sqrt()
    for m in range(model.config.num_steps):
        unused = usage[m] == 0
        n = int(unused.sum())
        if n == 0:
            continue
        total += n
        draw = mean[m] + std[m] * torch.randn(n, model.config.dim, generator=generator)
        draw = draw.to(model.data_mean.device, model.first_codebook.dtype)
        if m == 0:
            model.first_codebook[unused] = draw
        else:
            model.steps[m - 1].codebook[unused] = draw
            model.steps[m - 1].preselect[unused] = draw
    return total


def _resume_state(path: Path, config: QINCo2Config, train: QINCo2TrainConfig) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ConfigError(f"{path}: not a readable QINCo2 resume file ({error})") from error
    if state.get("format") != FORMAT_NAME + ".resume":
        raise ConfigError(f"{path}: not a QINCo2 resume file")
    if state["config"] != asdict(config) or state["train"] != asdict(train):
        raise ConfigError(f"{path}: QINCo2 resume file was written with another model or training config; "
                          f"delete it or use another output folder")
    return state


def fit_qinco2(
    data: torch.Tensor,
    config: QINCo2Config,
    train: QINCo2TrainConfig = QINCo2TrainConfig(),
    *,
    val_data: torch.Tensor | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
    resume_path: str | Path | None = None,
) -> tuple[QINCo2, FitHistory]:
    """Train QINCo2 on raw vectors data [N, D]; with ``val_data`` [N_val, D] (held out, e.g. other clips) it is
    never worse than its initialisation.

    With ``val_data``: plain k-means RQ (no noise, zero networks) is scored first; after every epoch the model is
    scored on val_data (:func:`selection_score`) and the best epoch's weights are kept; training stops after
    ``train.patience`` epochs without improvement; if the best epoch is worse than RQ (:func:`no_worse`), the RQ
    codebooks are returned and ``history.selected == "rq"`` says so. Without val_data the last epoch is returned.

    ``resume_path``: a file written after every epoch (model, optimiser, schedule, RNG, history, best weights);
    rerunning with the same file continues where it stopped and gives the same result as an uninterrupted run.
    Returns the model (eval mode) and its :class:`FitHistory`.
    """
    data = torch.as_tensor(data, dtype=torch.float32).cpu()
    if data.ndim != 2 or data.shape[1] != config.dim:
        raise ConfigError(f"QINCo2 training data must be [N, {config.dim}], got shape {tuple(data.shape)}")
    generator = torch.Generator().manual_seed(train.seed)
    torch.manual_seed(train.seed)
    model = QINCo2(config)
    model.rq_init_(data, kmeans_iters=train.kmeans_iters, noise=train.init_noise, generator=generator)
    model.to(device).train()
    x_all = model.normalize(data.to(device))
    val = torch.as_tensor(val_data, dtype=torch.float32).to(device) if val_data is not None else None

    per_epoch = train.vectors_per_epoch or data.shape[0]
    iters_per_epoch = max(1, math.ceil(per_epoch / train.batch_size))
    total_iters = iters_per_epoch * train.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    warmup = int(round(train.warmup_fraction * total_iters))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: lr_factor(i, total=total_iters, warmup=warmup, final_ratio=train.final_lr_ratio)
    )
    history = FitHistory()
    rq_state = best_state = None
    best_score, since_best, start_epoch = math.inf, 0, 0
    if val is not None:
        rq = build_rq(data, config, kmeans_iters=train.kmeans_iters, seed=train.seed).to(device)
        history.rq_val_mse_per_step = rq.prefix_mse(val, rq.encode(val))
        rq_state = {k: v.detach().cpu().clone() for k, v in rq.state_dict().items()}
        del rq
    resume_path = Path(resume_path) if resume_path is not None else None
    state = _resume_state(resume_path, config, train) if resume_path is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        history = FitHistory(**state["history"])
        best_state, best_score, since_best = state["best_state"], state["best_score"], state["since_best"]
        start_epoch = history.resumed_from_epoch = len(history.train_loss)
    m_steps, k = config.num_steps, config.codebook_size
    for epoch in range(start_epoch, train.epochs):
        if history.stopped_early:
            break
        model.train()
        started = time.perf_counter()
        usage = torch.zeros(m_steps, k, dtype=torch.long)
        res_sum = torch.zeros(m_steps, config.dim, dtype=torch.float64)
        res_sq = torch.zeros(m_steps, config.dim, dtype=torch.float64)
        seen, loss_sum = 0, 0.0
        order = torch.randint(0, data.shape[0], (per_epoch,), generator=generator) if train.vectors_per_epoch \
            else torch.randperm(data.shape[0], generator=generator)
        for s in _chunks(per_epoch, train.batch_size):
            x = x_all[order[s].to(device)]
            model.eval()
            codes = model._beam_search(x, m_steps, config.num_candidates, config.beam_size).codes
            model.train()
            out = model.losses(x, codes)
            loss = out.total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                for m in range(m_steps):
                    usage[m] += torch.bincount(codes[:, m].cpu(), minlength=k)
                    residual = (x if m == 0 else x - out.prefixes[m - 1]).double().cpu()
                    res_sum[m] += residual.sum(0)
                    res_sq[m] += residual.pow(2).sum(0)
            seen += x.shape[0]
            loss_sum += float(loss.detach()) * x.shape[0]
        reset = _reset_unused_(model, usage, res_sum, res_sq, seen, generator) if train.reset_unused else 0
        elapsed = time.perf_counter() - started
        history.train_loss.append(loss_sum / max(seen, 1))
        history.reset_codewords.append(reset)
        history.epoch_s.append(elapsed)
        history.vectors_per_s.append(seen / max(elapsed, 1e-9))
        model.eval()
        if val is not None:
            mse = model.prefix_mse(val, model.encode(val))
            history.val_mse_per_step.append(mse)
            score = selection_score(mse, train.selection)
            if score < best_score:
                best_score, since_best, history.best_epoch = score, 0, epoch + 1
                best_state = {k_: v.detach().cpu().clone() for k_, v in model.state_dict().items()}
            else:
                since_best += 1
            if train.patience and since_best >= train.patience and epoch + 1 < train.epochs:
                history.stopped_early = True
        if resume_path is not None:
            _save_resume(resume_path, config, train, model, optimizer, scheduler, generator, history,
                         best_state, best_score, since_best)
        if log is not None:
            val_txt = f" val_mse_M={history.val_mse_per_step[-1][-1]:.5g}" if history.val_mse_per_step else ""
            log(f"epoch {epoch + 1}/{train.epochs} loss={history.train_loss[-1]:.5g}{val_txt} reset={reset} "
                f"{history.vectors_per_s[-1]:.0f} vectors/s")
    if val is None:
        history.best_epoch = len(history.train_loss)
        history.note = "no held-out vectors: the last epoch is kept (not compared with RQ)"
        return model.eval(), history
    best_mse = history.val_mse_per_step[history.best_epoch - 1] if history.best_epoch else None
    worse_prefixes = [m + 1 for m, (a, b) in enumerate(zip(best_mse or [], history.rq_val_mse_per_step)) if a > b]
    if best_mse is not None and no_worse(best_mse, history.rq_val_mse_per_step, train.selection):
        model.load_state_dict(best_state)
        history.selected = "qinco2"
        history.note = (f"kept QINCo2 epoch {history.best_epoch} of {len(history.train_loss)}: held-out MSE at M "
                        f"{best_mse[-1]:.5g} vs RQ {history.rq_val_mse_per_step[-1]:.5g}"
                        + (f"; worse than RQ with m = {worse_prefixes} steps" if worse_prefixes else ""))
    else:
        model.load_state_dict(rq_state)
        history.selected, history.best_epoch = "rq", 0
        trained_txt = f"{best_mse[-1]:.5g}" if best_mse is not None else "n/a"
        history.note = (f"kept the plain RQ codebooks (networks zero): the trained QINCo2 was worse on held-out "
                        f"vectors (best MSE at M {trained_txt} vs RQ {history.rq_val_mse_per_step[-1]:.5g})")
    if log is not None:
        log(history.note)
    return model.eval(), history


def _save_resume(path: Path, config, train, model, optimizer, scheduler, generator, history, best_state, best_score,
                 since_best) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({
        "format": FORMAT_NAME + ".resume", "config": asdict(config), "train": asdict(train),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "generator": generator.get_state(), "history": asdict(history), "best_state": best_state,
        "best_score": best_score, "since_best": since_best,
    }, tmp)
    tmp.replace(path)
