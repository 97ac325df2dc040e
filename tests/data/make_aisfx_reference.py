"""Writes tests/data/aisfx_essentia_reference.npz: aiSFX embeddings through the package's own Essentia path.

Not part of the test suite; run once (essentia is never a project dependency):

  step 1, in a venv with essentia (``python -m venv /tmp/ess && /tmp/ess/bin/pip install essentia soundfile``):
      /tmp/ess/bin/python tests/data/make_aisfx_reference.py spectrograms /tmp/aisfx_ref
  step 2, in the tox env (aisfx installed --no-deps):
      python tests/data/make_aisfx_reference.py embed /tmp/aisfx_ref

Step 1 writes the clips of ``tests/aisfx_support.py`` as float WAV and runs aisfx's
``spectrogram/spectrogram_essentia.py:compute_spectrogram`` (loaded by file path; only numpy + essentia needed)
with the package's parameters (44.1 kHz, 2048/1024, 96 htk mel bands 0-22.05 kHz). Step 2 applies the package's
``spectrogram_normalize`` ('original') and ``model_get_embedding`` (hop 0.5 block, partial block dropped) with the
package's ``load_bestModel`` and stores the embeddings [blocks, 512] per clip, plus the essentia version.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from aisfx_support import FIXTURE, SAMPLE_RATE_HZ, aisfx_clips  # noqa: E402

AISFX_ESSENTIA_FILE = "aisfx/spectrogram/spectrogram_essentia.py"


def spectrograms(out: Path, aisfx_site: Path) -> None:
    import essentia
    import soundfile as sf

    spec = importlib.util.spec_from_file_location("spectrogram_essentia", aisfx_site / AISFX_ESSENTIA_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out.mkdir(parents=True, exist_ok=True)
    mels = {}
    for name, clip in aisfx_clips().items():
        path = out / f"{name}.wav"
        sf.write(path, clip, SAMPLE_RATE_HZ, subtype="FLOAT")
        mels[name] = np.asarray(module.compute_spectrogram(
            filename=str(path), sr=float(SAMPLE_RATE_HZ), block_size=2048, hop_size=1024, n_mels=96,
            f_min=0.0, f_max=22050.0))
    np.savez(out / "essentia_mels.npz", **mels)
    (out / "essentia_version.json").write_text(json.dumps({"essentia": essentia.__version__}))


def embed(out: Path) -> None:
    import aisfx
    import torch
    from aisfx import inference, preprocessing

    path = inference.get_path_modelWeights()
    weights, ds_dict = torch.load(path, map_location="cpu", weights_only=False)  # trusted: the wheel's own file
    model = inference.load_bestModel(weights, ds_dict, "cpu")
    mels = dict(np.load(out / "essentia_mels.npz"))
    result = {}
    for name, mel in mels.items():
        spec = preprocessing.spectrogram_normalize(mel, spec_norm="original")
        result[f"emb_{name}"] = inference.model_get_embedding(spec, 0.5, True, model, "cpu").numpy()
        result[f"frames_{name}"] = np.asarray(mel.shape[0])
    version = json.loads((out / "essentia_version.json").read_text())["essentia"]
    result["provenance"] = np.asarray(
        f"aisfx {getattr(aisfx, '__version__', '0.1.2')} Essentia path, essentia {version}, torch {torch.__version__}"
    )
    np.savez_compressed(HERE / FIXTURE, **result)
    print({k: v.shape for k, v in result.items()})


if __name__ == "__main__":
    step, folder = sys.argv[1], Path(sys.argv[2])
    if step == "spectrograms":
        spectrograms(folder, Path(sys.argv[3]) if len(sys.argv) > 3 else
                     Path("/work/main/.tox/codecbench/lib/python3.11/site-packages"))
    else:
        embed(folder)
