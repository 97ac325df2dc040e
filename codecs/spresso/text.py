"""Text conditioning for S-PRESSO: LAION-CLAP text-tower embeddings of captions, written as ``<stem>.text.npy``.

The DiT takes text embeddings [B, L, E] (default L = 1 pooled token, E = 512: the LAION-CLAP text embedding). Two
paths give them:

- offline / precomputed: ``<stem>.text.npy`` [L, E] beside each audio file (computed anywhere); read by
  :class:`~codecbench.codecs.spresso.data.ClipSource`;
- :func:`embed_captions` / :func:`write_caption_embeddings`: the LAION-CLAP text tower (codecbench's CLAP
  model, ``codecbench.bench.core.clap_model``: ``630k-audioset-best.pt`` in the weights folder, laion-clap installed) computes them here. Without
  the weights or the package this is a one-line error naming what is missing. (laion_clap also needs the
  ``roberta-base`` tokenizer files from the Hugging Face cache.)

Captions file: CSV with columns ``file`` (path relative to the data folder) and ``caption``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from codecbench.bench.core.errors import CodecbenchError, ConfigError


def embed_captions(captions: Sequence[str], weights_dir: str | None = None, device: str = "cpu") -> np.ndarray:
    """LAION-CLAP text embeddings of ``captions``: [N, 1, 512] float32 (unit norm, one pooled token)."""
    from codecbench.bench.core.clap_model import CLAP_WEIGHTS, build_clap_module

    missing = CLAP_WEIGHTS.missing_reason(weights_dir)
    if missing:
        raise ConfigError(f"S-PRESSO text conditioning: {missing}; or give precomputed <stem>.text.npy files")
    model = build_clap_module(CLAP_WEIGHTS.fetch(weights_dir), device)
    try:
        embedded = model.get_text_embedding(list(captions), use_tensor=False)
    except CodecbenchError:
        raise
    except Exception as error:  # noqa: BLE001 - e.g. the roberta-base tokenizer cannot be fetched offline
        raise ConfigError(f"S-PRESSO text conditioning: the LAION-CLAP text tower failed ({type(error).__name__}: "
                          f"{error}); give precomputed <stem>.text.npy files instead") from error
    return np.asarray(embedded, dtype=np.float32)[:, None, :]


def read_captions(path: str | os.PathLike) -> list[tuple[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: captions file does not exist")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"file", "caption"} <= set(reader.fieldnames):
            raise ConfigError(f"{path}: captions CSV needs the columns file, caption (got {reader.fieldnames})")
        return [(row["file"], row["caption"]) for row in reader]


def write_caption_embeddings(data_dir: str | os.PathLike, captions_csv: str | os.PathLike, embed=embed_captions,
                             batch_size: int = 64) -> int:
    """Write ``<stem>.text.npy`` [1, 512] beside every captioned file of ``data_dir``; returns how many."""
    data_dir = Path(data_dir)
    rows = read_captions(captions_csv)
    for name, _ in rows:
        if not (data_dir / name).is_file():
            raise ConfigError(f"{captions_csv}: file {name!r} is not in {data_dir}")
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        vectors = embed([caption for _, caption in chunk])
        for (name, _), vector in zip(chunk, vectors):
            target = data_dir / name
            np.save(target.with_name(target.stem + ".text.npy"), vector.astype(np.float32))
    return len(rows)
