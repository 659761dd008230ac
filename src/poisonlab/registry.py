"""Named registries: attacks, defenses and triggers are all found by name the same way.

A :class:`Registry` is a read-only mapping from a name to an object (a class, a trigger spec).
Entries arrive in one of two ways:

* eagerly, with the :meth:`Registry.register` decorator (the idea of cleanlab's ``@register``)::

      ATTACKS = Registry("attack")

      @ATTACKS.register          # registered under the class's ``name`` attribute
      class LabelFlip(PoisoningAttack):
          name = "label_flip"

* lazily, as a ``"module:attribute"`` path imported on first access, so that importing a
  package full of heavy modules stays cheap::

      DEFENSES = Registry("defense", {"strip": "detectors.strip:STRIP"}, package="poisonlab.defenses")

Unknown names are a ``KeyError`` through the mapping interface (``name in registry`` works as for a
dict) and a ``ValueError`` listing the valid names through :meth:`Registry.lookup` and
:meth:`Registry.create`, which is what user-facing code calls.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A mapping ``name -> object`` filled by decorator, by :meth:`add` or by lazy import paths.

    Parameters
    ----------
    kind : str
        What the entries are, for error messages (``"attack"`` -> ``"unknown attack 'x'"``).
    entries : mapping of str to object or str, optional
        Initial entries; a string value is a lazy ``"module:attribute"`` path.
    package : str, optional
        Lazy module paths are inside this package (``"strip:STRIP"`` with
        ``package="poisonlab.defenses"`` imports ``poisonlab.defenses.strip``).
    """

    def __init__(self, kind: str, entries: Mapping[str, T | str] | None = None, *, package: str = "") -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, T | str] = {}
        for name, entry in (entries or {}).items():
            self.add(name, entry)

    # ------------------------------------------------------------------------------- filling
    def add(self, name: str, entry: T | str) -> None:
        """Register ``entry`` (or a lazy ``"module:attribute"`` path) as ``name``.

        Raises
        ------
        ValueError
            If ``name`` is empty or already taken (two entries under one name is always a bug).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if isinstance(entry, str) and entry.count(":") != 1:
            raise ValueError(f"a lazy {self.kind} entry must look like 'module:attribute', got {entry!r}")
        self._entries[name] = entry

    @overload
    def register(self, obj: T, /) -> T: ...

    @overload
    def register(self, name: str, /) -> Callable[[T], T]: ...

    def register(self, obj_or_name: Any, /) -> Any:
        """Decorator: ``@registry.register`` (name from ``obj.name``) or ``@registry.register("x")``."""
        if isinstance(obj_or_name, str):
            name = obj_or_name

            def decorate(obj: T) -> T:
                self.add(name, obj)
                return obj

            return decorate
        self.add(obj_or_name.name, obj_or_name)
        return obj_or_name

    # ------------------------------------------------------------------------------- reading
    def __getitem__(self, name: str) -> T:
        entry = self._entries[name]  # KeyError for unknown names, as any mapping
        if isinstance(entry, str):
            module_name, attribute = entry.split(":")
            path = f"{self.package}.{module_name}" if self.package else module_name
            entry = getattr(importlib.import_module(path), attribute)
            self._entries[name] = entry  # import once; later lookups are a dict access
        return entry  # type: ignore[return-value]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries  # without importing lazy entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={list(self._entries)})"

    def unknown(self, name: object, valid: list[str] | None = None) -> ValueError:
        """The error for a name that is not registered (or not among ``valid``), listing the valid ones."""
        names = list(self._entries) if valid is None else valid
        return ValueError(f"unknown {self.kind} {name!r}; expected one of {', '.join(names)}")

    def lookup(self, name: str) -> T:
        """The entry registered as ``name``; ValueError listing the valid names if there is none."""
        if name not in self._entries:
            raise self.unknown(name)
        return self[name]

    def create(self, name: str, /, **params: Any) -> Any:
        """Call the entry ``name`` (normally a class) with keyword ``params``."""
        return self.lookup(name)(**params)  # type: ignore[operator]

    def where(self, **attributes: Any) -> tuple[str, ...]:
        """Names of the entries whose attributes equal ``attributes`` (imports lazy entries).

        ``ATTACKS.where(crafted=True)`` lists the optimisation-based attacks, for example.
        """
        return tuple(
            name
            for name in self._entries
            if all(getattr(self[name], key, None) == value for key, value in attributes.items())
        )
