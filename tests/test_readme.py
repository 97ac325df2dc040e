"""The README's config example and demo config validate: the docs cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from codecbench.bench import config

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_example_validates():
    block = re.search(r"## Config.*?```yaml\n(.*?)```", README.read_text(), re.S).group(1)
    cfg = config.parse(yaml.safe_load(block))
    assert cfg.name == "sfx-low-rate" and [c.name for c in cfg.codecs] == ["opus", "dac_44khz", "lowpass_3k5"]
    assert [p["n_codebooks"] for p in cfg.codecs[1].points] == [2, 4]
    assert cfg.retries == 1 and cfg.entropy_fit_fraction == 0.5


def test_readme_opens_with_the_two_commands():
    lines = [line for line in README.read_text().splitlines() if line.startswith("python3 -m pip install tox")]
    assert lines[0].split("#")[0].strip() == "python3 -m pip install tox && python3 -m tox -e codecbench -- codecbench demo"
    assert lines[1].split("#")[0].strip() == "python3 -m pip install tox && python3 -m tox -e codecbench"
    ci = (README.parent / ".ci" / "run").read_text()
    assert all(line.split("#")[0].strip() in ci for line in lines[:2])
