"""Text conditioning: classifier-free guidance at sampling (off by default), caption embeddings via the
LAION-CLAP text tower (one-line error without weights), precomputed embeddings picked up by the data loader."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from codecbench.bench.core.errors import ConfigError
from codecbench.codecs.spresso.config import load_config
from codecbench.codecs.spresso.data import ClipSource
from codecbench.codecs.spresso.model import build_spresso
from codecbench.codecs.spresso.text import embed_captions, write_caption_embeddings


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_spresso(load_config("tiny", {"latent_encoder.time_pool": 4})).eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # zero-initialised (adaLN-Zero) layers would hide the text: random weights everywhere
        for p in m.dit.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return m


def test_classifier_free_guidance(model):
    z = model.encode(torch.randn(1, 4800, generator=torch.Generator().manual_seed(1)) * 0.1)
    text = torch.randn(1, 1, model.config.dit.text_dim, generator=torch.Generator().manual_seed(2))
    decode = lambda **kw: model.decode_latents(z, 10, seed=0, steps=2, **kw)  # noqa: E731
    plain = decode(text=text)
    torch.testing.assert_close(decode(text=text, guidance_scale=1.0), plain)  # w = 1: no guidance (default)
    torch.testing.assert_close(decode(text=text, guidance_scale=0.0), decode(text=None), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(plain, decode(text=None), atol=1e-4)  # the text matters in this model
    guided = decode(text=text, guidance_scale=3.0)
    assert not torch.allclose(guided, plain, atol=1e-4)
    torch.testing.assert_close(decode(text=None, guidance_scale=3.0), decode(text=None))  # null text: nothing to guide


def test_caption_embeddings_without_weights_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        embed_captions(["a dog barks"], weights_dir=str(tmp_path / "no-weights"))
    message = str(info.value)
    assert "\n" not in message and "S-PRESSO text conditioning" in message and "text.npy" in message


def test_written_caption_embeddings_are_read_by_the_loader(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.wav", "b.wav"):
        sf.write(str(data / name), np.zeros(4800, np.float32), 48000)
    (tmp_path / "captions.csv").write_text("file,caption\na.wav,a door slams\n")
    fake = lambda captions: np.full((len(captions), 1, 512), 0.5, np.float32)  # noqa: E731
    assert write_caption_embeddings(data, tmp_path / "captions.csv", embed=fake) == 1
    source = ClipSource.from_folder(data)
    assert source.text(0).shape == (1, 512) and source.texts[1] is None
    batch = source.batch(4, 480, seed=0, step=0)
    assert batch.text.shape == (4, 1, 512) and batch.has_text.any()
    (tmp_path / "bad.csv").write_text("name,text\nx,y\n")
    with pytest.raises(ConfigError, match="needs the columns file, caption"):
        write_caption_embeddings(data, tmp_path / "bad.csv", embed=fake)
    (tmp_path / "missing.csv").write_text("file,caption\nzz.wav,x\n")
    with pytest.raises(ConfigError, match="file 'zz.wav' is not in"):
        write_caption_embeddings(data, tmp_path / "missing.csv", embed=fake)
