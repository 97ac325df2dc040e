"""Import floors (docs/architecture.md): data flows one way, so imports may only point down.

- the foundation ``codecbench.bench.core`` imports nothing else of codecbench;
- ``codecbench.codecs`` imports only itself and the foundation (a codec never imports a metric or the runner);
- a metric (``codecbench.bench.metrics``) imports only metrics and the foundation;
- the listening test never imports the run machinery (runner, api, executors, grid, Slurm).

Every import counts, also the lazy ones inside functions. The walker is checked on a planted violation, so the
contract test can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"bench": "codecbench.bench", "codecs": "codecbench.codecs", "listening_test": "codecbench.listening_test"}
RUN_MACHINERY = ("codecbench.bench.runner", "codecbench.bench.api", "codecbench.bench.executors",
                 "codecbench.bench.grid", "codecbench.bench.slurm")


def imported_modules(source: str) -> set[str]:
    """Every ``codecbench`` module a source text imports (``from a import b`` counts as ``a`` and ``a.b``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "codecbench" or name.startswith("codecbench.")}


def module_name(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [FOLDERS[folder], *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, set[str]]:
    table = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            table[module_name(path)] = imported_modules(path.read_text(encoding="utf-8"))
    return table


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def violations(table: dict[str, set[str]]) -> list[str]:
    found = []
    for module, imports in table.items():
        for target in sorted(imports):
            # "from codecbench.bench import core" names a package on the way down: only its leaves are checked
            if target in ("codecbench", "codecbench.bench", "codecbench.codecs"):
                continue
            if within(module, "codecbench.bench.core") and not within(target, "codecbench.bench.core"):
                found.append(f"{module} (foundation) imports {target}")
            elif within(module, "codecbench.codecs") and not within(target, "codecbench.codecs", "codecbench.bench.core"):
                found.append(f"{module} (codecs) imports {target}: codecs may import only the foundation")
            elif within(module, "codecbench.bench.metrics") and not within(
                    target, "codecbench.bench.metrics", "codecbench.bench.core"):
                found.append(f"{module} (metric) imports {target}: metrics may import only metrics and the foundation")
            elif within(module, "codecbench.listening_test") and within(target, *RUN_MACHINERY):
                found.append(f"{module} (listening test) imports the run machinery {target}")
    return found


def test_the_project_keeps_its_import_floors():
    table = sources()
    assert "codecbench.bench.core.errors" in table and "codecbench.codecs.base" in table
    assert violations(table) == []


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("codecbench.bench.core.audio", "def f():\n    from codecbench.codecs import registry\n", "(foundation)"),
    ("codecbench.codecs.dac_codec", "import codecbench.bench.metrics.mel_distance\n", "(codecs)"),
    ("codecbench.codecs.spresso.stage3", "from codecbench.bench import runner\n", "(codecs)"),
    ("codecbench.bench.metrics.pesq_metric", "from codecbench.bench.runner import execute_unit\n", "(metric)"),
    ("codecbench.listening_test.bundle", "from codecbench.bench import api\n", "(listening test)"),
])
def test_a_planted_violation_is_caught(module, source, expected):
    problems = violations({module: imported_modules(source)})
    assert problems and all(expected in problem for problem in problems), problems


def test_allowed_imports_pass():
    table = {
        "codecbench.codecs.base": imported_modules("from codecbench.bench.core import audio as audio_ops\n"),
        "codecbench.bench.metrics.si_sdr": imported_modules("from codecbench.bench.metrics.base import ItemMetric\n"),
        "codecbench.bench.runner": imported_modules("from codecbench.codecs.base import Codec\n"),
    }
    assert violations(table) == []
