"""Styles and runtimes by name: registration checks, aliases, did-you-mean lookups."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Generic, TypeVar

from . import API_VERSION

T = TypeVar("T")

_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


class RegistryError(ValueError):
    """A registration is invalid (bad name, duplicate, wrong API version)."""


class UnknownNameError(KeyError):
    """A lookup by name failed; the message suggests close names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    distribution: str
    version: str
    aliases: tuple[str, ...] = ()


class Registry(Generic[T]):
    """A name → entry table with aliases.  ``kind`` is used in messages ("style", "runtime")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, obj: T, *, distribution: str, version: str = "", aliases: tuple[str, ...] = ()) -> Entry[T]:
        for n in (name, *aliases):
            if not isinstance(n, str) or not _NAME.match(n):
                raise RegistryError(
                    f"{self.kind} name {n!r} from {distribution} is invalid: use lower-case letters, digits, '-' and '_'"
                )
        for n in (name, *aliases):
            owner = self._owner(n)
            if owner is not None:
                raise RegistryError(
                    f"{self.kind} {n!r} is registered twice: by {owner.distribution} ({owner.name}) and by {distribution}"
                )
        entry = Entry(name, obj, distribution, version, tuple(aliases))
        self._entries[name] = entry
        for a in aliases:
            self._aliases[a] = name
        return entry

    def _owner(self, n: str) -> Entry[T] | None:
        if n in self._entries:
            return self._entries[n]
        if n in self._aliases:
            return self._entries[self._aliases[n]]
        return None

    def resolve(self, name: str) -> str:
        key = name.strip().lower().replace(" ", "-")
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        # pix2pix vs pix-2-pix vs pix_2_pix: try the other separator before giving up
        for alt in (key.replace("_", "-"), key.replace("-", "_")):
            if alt in self._entries or alt in self._aliases:
                return self._aliases.get(alt, alt)
        known = sorted([*self._entries, *self._aliases])
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(sorted(self._entries)) or "none are installed"
        raise UnknownNameError(f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {listing}.")

    def get(self, name: str) -> Entry[T]:
        return self._entries[self.resolve(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self):
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)


def check_style_class(cls: type, distribution: str) -> None:
    """Validate a Style subclass at registration: base class, name, API version, Config types."""
    from .style import Style, StyleConfig

    if not (isinstance(cls, type) and issubclass(cls, Style)):
        raise RegistryError(f"{distribution} registered {cls!r}, which is not a styleengine.Style subclass")
    if not getattr(cls, "name", None):
        raise RegistryError(f"{distribution}: style class {cls.__qualname__} has no name")
    if cls.api_version != API_VERSION:
        raise RegistryError(
            f"{distribution}: style {cls.name!r} targets plugin API version {cls.api_version}, "
            f"this styleengine provides version {API_VERSION}; upgrade the plugin or the engine"
        )
    for attr in ("Config", "ModelConfig"):
        c = getattr(cls, attr)
        if not (isinstance(c, type) and issubclass(c, StyleConfig)):
            raise RegistryError(f"{distribution}: {cls.name}.{attr} must subclass styleengine.style.StyleConfig")
    if cls.TrainConfig is not None and not issubclass(cls.TrainConfig, StyleConfig):
        raise RegistryError(f"{distribution}: {cls.name}.TrainConfig must subclass styleengine.style.StyleConfig")
