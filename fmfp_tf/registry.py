"""The one registry type: named entries of one kind (defense layers, adversarial-training
methods, attacks, datasets), each given as the object itself or as "module:attribute", imported
on first use so that listing names (the CLI's help, config validation) imports no framework.

Example:

>>> from fmfp_tf.registry import Registry
>>> r = Registry("colour", {"red": "colorsys:rgb_to_hsv"})
>>> r.names(), r["red"].__name__
(('red',), 'rgb_to_hsv')
"""
import collections.abc
import importlib

from fmfp_tf.errors import UsageError


class UnknownName(UsageError, KeyError):
    """A name no registry entry has (a UsageError for the CLI, a KeyError for `Mapping.get`)."""

    def __str__(self):
        return self.args[0]


def resolve(reference):
    """The object a "module:attribute" string names; any other object as it is."""
    if not isinstance(reference, str):
        return reference
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Registry(collections.abc.Mapping):
    """name -> entry, in registration order; `registry[name]` resolves a "module:attribute"
    entry once and checks it: an instance of `entry_type` whose `name` is its key, and/or
    `check(name, entry)` (which raises on a wrong kind)."""

    def __init__(self, kind, entries=(), check=None, check_name=None, entry_type=None):
        self.kind = kind
        self._entry_type = entry_type
        self._check = check if entry_type is None else self._check_type
        self._check_name = check_name
        self._entries = {}
        for name, entry in dict(entries).items():
            self.register(name, entry)

    def _check_type(self, name, entry):
        if not isinstance(entry, self._entry_type) or getattr(entry, "name", name) != name:
            raise TypeError(f"{self.kind} {name!r}: {entry!r} is not a "
                            f"{self._entry_type.__name__} named {name!r}")

    def register(self, name, entry):
        """Adds `entry` under `name` (a later one of the same name replaces it); returns entry."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string; got {name!r}")
        if self._check_name is not None:
            self._check_name(name)
        if self._check is not None and not isinstance(entry, str):
            self._check(name, entry)
        self._entries[name] = entry
        return entry

    def __getitem__(self, name):
        if name not in self._entries:
            raise UnknownName(f"unknown {self.kind} {name!r}; expected one of "
                              f"{', '.join(self._entries)} (a plugin's names exist once its "
                              "module is imported: fmfp-tf --plugin MODULE)")
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = resolve(entry)
            if self._check is not None:
                self._check(name, entry)
            self._entries[name] = entry
        return entry

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(list(self._entries))

    def __len__(self):
        return len(self._entries)

    def names(self):
        return tuple(self._entries)

    def __repr__(self):
        return f"Registry({self.kind!r}, {self.names()})"
