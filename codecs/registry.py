"""The codec registry: built-ins from :mod:`codecbench.codecs.catalogue`, third parties from entry points.

    from codecbench.codecs import registry
    registry.names()                   # every codec name
    registry.get("opus")               # the class
    registry.create("opus")            # an instance (options from the config as keyword arguments)
    registry.classes(is_anchor=True)   # filtered by CodecInfo fields

Third-party packages register a :class:`~codecbench.codecs.base.Codec` subclass (an encoder/decoder pair) or a
:class:`~codecbench.codecs.base.System` subclass (anything else that turns reference items into decoded items)
under the entry-point group ``codecbench.codecs`` (``name = "package.module:ClassName"``); the entry point's name
must equal ``info.name``. The contract: docs/codecs.md.
"""

from __future__ import annotations

from codecbench.bench.core.registry import Registry
from codecbench.codecs.base import System

ENTRY_POINT_GROUP = "codecbench.codecs"


def _builtins() -> dict[str, str]:
    from codecbench.codecs.catalogue import BUILTIN_CODECS

    return BUILTIN_CODECS


REGISTRY: Registry[System] = Registry("codec", System, _builtins, ENTRY_POINT_GROUP)
register, names, source, get, create, classes = (
    REGISTRY.register, REGISTRY.names, REGISTRY.source, REGISTRY.get, REGISTRY.create, REGISTRY.classes,
)
