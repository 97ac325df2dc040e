"""Errors of the codec plugin contract: a plugin returned something the contract does not allow."""

from __future__ import annotations

from codecbench.bench.core.errors import CodecbenchError


class BitstreamError(CodecbenchError):
    """A bitstream was built with inconsistent fields (codes outside their alphabet, a bad shape, an unknown
    declared rate). The message names the field and the value."""


class ProtocolError(CodecbenchError):
    """A codec or system plugin returned something its contract does not allow (a wrong type, a wrong count of
    bitstreams, decoded audio of the wrong shape). The message names the plugin, its class and what it returned."""

    def __init__(self, plugin: object, method: str, problem: str):
        cls = plugin if isinstance(plugin, type) else type(plugin)
        info = getattr(cls, "info", None)
        name = getattr(info, "name", cls.__name__)
        self.plugin, self.method, self.problem = name, method, problem
        super().__init__(f"codec plugin '{name}' ({cls.__module__}:{cls.__qualname__}).{method}: {problem}")


def describe(value: object) -> str:
    """A short description of ``value`` for error messages: its type, and the shape of an array or tensor."""
    shape = getattr(value, "shape", None)
    text = type(value).__name__
    if shape is not None:
        text += f" of shape {tuple(shape)}"
    elif isinstance(value, (list, tuple)):
        text += f" of {len(value)}"
    return text
