"""A registry that reads like a catalogue: built-ins listed in one module, third parties through entry points.

One mechanism serves codecs (:mod:`codecbench.codecs.registry`) and metrics (:mod:`codecbench.bench.metrics.registry`):

- built-ins are ``name -> "module:Class"`` strings, imported only when used;
- third-party packages add ``name = "module:Class"`` under an entry-point group;
- a duplicate name raises; an unknown name raises with the known names and the closest match;
- every class carries an ``info`` dataclass whose ``name`` must equal its registered name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib import metadata
from typing import Generic, TypeVar

from codecbench.bench.core.errors import CodecbenchError, UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, base: type, builtins: Callable[[], dict[str, str]], entry_point_group: str):
        self.kind, self.base, self.entry_point_group = kind, base, entry_point_group
        self._builtins = builtins
        self._targets: dict[str, str] = {}
        self._classes: dict[str, type[T]] = {}
        self._sources: dict[str, str] = {}
        self._discovered = False

    def register(self, name: str, target: str | type[T], source: str = "built-in") -> None:
        """Register ``target`` (a class or ``"module:Class"``) under ``name``; a duplicate name raises."""
        self._discover()
        self._add(name, target, source)

    def _add(self, name: str, target: str | type[T], source: str) -> None:
        if name in self._sources:
            raise CodecbenchError(f"{self.kind} name '{name}' is registered twice ({self._sources[name]} and {source})")
        if isinstance(target, str):
            self._targets[name] = target
        else:
            self._classes[name] = target
        self._sources[name] = source

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        for name, target in self._builtins().items():
            self._add(name, target, "built-in")
        for entry in metadata.entry_points(group=self.entry_point_group):
            dist = getattr(entry, "dist", None)
            self._add(entry.name, entry.value, f"entry point of {dist.name if dist else '?'}")

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._sources)

    def source(self, name: str) -> str:
        self._discover()
        return self._sources[name]

    def get(self, name: str) -> type[T]:
        """The class registered under ``name``; :class:`UnknownNameError` with the closest match otherwise."""
        self._discover()
        if name in self._classes:
            return self._classes[name]
        if name not in self._targets:
            raise UnknownNameError(self.kind, name, self.names())
        module_name, _, attr = self._targets[name].partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise CodecbenchError(f"{self.kind} '{name}' ({self._targets[name]}) is not a {self.base.__name__} subclass")
        if cls.info.name != name:
            raise CodecbenchError(f"{self.kind} registered as '{name}' calls itself '{cls.info.name}'")
        self._classes[name] = cls
        return cls

    def create(self, name: str, **options) -> T:
        """An instance of ``name`` built with the config's options."""
        return self.get(name)(**options)

    def classes(self, **info_filters) -> list[type[T]]:
        """Registered classes whose ``info`` matches every ``field=value`` filter."""
        out = []
        for name in self.names():
            cls = self.get(name)
            if all(getattr(cls.info, key) == value for key, value in info_filters.items()):
                out.append(cls)
        return out
