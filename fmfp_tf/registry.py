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
import sys

from fmfp_tf.errors import UsageError


class UnknownName(UsageError, KeyError):
    """A name no registry entry has (a UsageError for the CLI, a KeyError for `Mapping.get`)."""

    def __str__(self):
        return self.args[0]


# modules whose functions only pass a registration on (`attack_specs.register`, ...): the
# origin of an entry is the module that called them
_PASSING_ON = {__name__}


def passes_registrations_on(module_name):
    """Declares that functions of `module_name` register on behalf of their caller."""
    _PASSING_ON.add(module_name)


def _origin():
    """The module that made the registration under way: the first frame outside the modules
    that pass registrations on (or their own module-level code, for their built-in entries)."""
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "?")
        if module not in _PASSING_ON or frame.f_code.co_name == "<module>":
            return module
        frame = frame.f_back
    return "?"


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
        self._origins = {}
        for name, entry in dict(entries).items():
            self.register(name, entry)

    def _check_type(self, name, entry):
        if not isinstance(entry, self._entry_type) or getattr(entry, "name", name) != name:
            raise TypeError(f"{self.kind} {name!r}: {entry!r} is not a "
                            f"{self._entry_type.__name__} named {name!r}")

    def register(self, name, entry, replace=False):
        """Adds `entry` under `name`; returns entry. A name another module registered is an
        error naming both (a plugin never replaces a built-in, or another plugin's entry,
        silently); `replace=True` replaces it on purpose. The same module registering a name
        again (imported twice) replaces its own entry."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string; got {name!r}")
        origin = _origin()
        if name in self._entries and not replace and self._origins[name] != origin:
            raise UsageError(f"{self.kind} {name!r} is registered by {self._origins[name]} and "
                             f"again by {origin}; choose another name, or register it with "
                             "replace=True to replace it on purpose")
        if self._check_name is not None:
            self._check_name(name)
        if self._check is not None and not isinstance(entry, str):
            self._check(name, entry)
        self._entries[name] = entry
        self._origins[name] = origin
        return entry

    def origin(self, name):
        """The module that registered `name`."""
        return self._origins[name]

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
