"""The LAION-CLAP model (HTSAT-tiny, non-fusion) built offline from a local checkpoint.

Shared by the CLAP audio embedder (``codecbench.bench.metrics.model_embedders``) and S-PRESSO's text conditioning
(``codecbench.codecs.spresso.text``), which may not import a metric. laion_clap is imported only here, when a model
is built.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from codecbench.bench.core import weights
from codecbench.bench.core.errors import MissingDependencyError

CLAP_WEIGHTS = weights.WeightsFile(
    "LAION-CLAP (630k-audioset, HTSAT-tiny, non-fusion)",
    "630k-audioset-best.pt",
    "https://huggingface.co/lukewys/laion_clap/resolve/main/630k-audioset-best.pt",
    "laion_clap",
)
CLAP_INSTALL = "pip install laion-clap==1.1.7"


@contextlib.contextmanager
def _roberta_from_config() -> Iterator[None]:
    """laion_clap builds its text tower with RobertaModel.from_pretrained('roberta-base'), which downloads. The text
    tower's weights are in every CLAP checkpoint, so build the roberta-base architecture from its configuration."""
    from transformers import RobertaConfig, RobertaModel

    had_own = "from_pretrained" in RobertaModel.__dict__
    original = RobertaModel.__dict__.get("from_pretrained")

    def from_config(cls, *args, **kwargs):  # noqa: ARG001 - same signature as from_pretrained
        config = RobertaConfig(
            vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
            pad_token_id=1, bos_token_id=0, eos_token_id=2,
        )
        return cls(config)

    RobertaModel.from_pretrained = classmethod(from_config)
    try:
        yield
    finally:
        if had_own:
            RobertaModel.from_pretrained = original
        else:
            del RobertaModel.from_pretrained  # the inherited classmethod is visible again


def build_clap_module(path: Path | None, device: str = "cpu") -> Any:
    """``laion_clap.CLAP_Module`` (HTSAT-tiny) on ``device``; loads the checkpoint at ``path`` (None: random init)."""
    weights.set_offline(weights.is_offline())  # HF variables before the import (no-op online)
    try:
        laion_clap = importlib.import_module("laion_clap")
    except ImportError as exc:
        raise MissingDependencyError("LAION-CLAP", "laion-clap", CLAP_INSTALL) from exc
    with _roberta_from_config(), contextlib.redirect_stdout(None):
        module = laion_clap.CLAP_Module(enable_fusion=False, amodel="HTSAT-tiny", device=device)
        if path is not None:
            module.load_ckpt(str(path))
    return module
