"""Plugins: modules that register defense layers, adversarial-training methods, attacks and
datasets from outside the package, so that every fresh process (a later `fmfp-tf evaluate` of a
run trained with a plugin's layer) knows them too.

A plugin is found two ways: named on the command line (`fmfp-tf --plugin my_defenses ...`), or
declared by an installed package under the entry-point group `fmfp_tf.plugins`
(`[project.entry-points."fmfp_tf.plugins"] my = "my_defenses"`), which the CLI loads at every
start. A library user imports the module itself. Commands come from the group
`fmfp_tf.commands` (name = "module:click_command"), which the CLI adds beside its own.

Importing a plugin runs its `register...` calls and its `@keras.saving.register_keras_serializable`
decorators, so a saved model holding its layer loads after it.
"""
import importlib
import importlib.metadata
import logging

from fmfp_tf.errors import UsageError

GROUP = "fmfp_tf.plugins"
COMMANDS_GROUP = "fmfp_tf.commands"

logger = logging.getLogger(__name__)


def load(modules=(), installed=True):
    """Imports each module named in `modules`, then (with `installed`) each installed plugin of
    the entry-point group; returns the module names imported, in order."""
    loaded = []
    for name in modules:
        _import(name, f"plugin {name!r}")
        loaded.append(name)
    if installed:
        for entry in _entry_points(GROUP):
            _import(entry.value, f"installed plugin {entry.name!r} ({entry.value})")
            loaded.append(entry.value)
    if loaded:
        logger.debug("plugins loaded: %s", ", ".join(loaded))
    return loaded


def commands():
    """{name: loaded object} of the entry-point group `fmfp_tf.commands`."""
    found = {}
    for entry in _entry_points(COMMANDS_GROUP):
        try:
            found[entry.name] = entry.load()
        except (Exception, SystemExit) as error:  # noqa: BLE001 - named, never a traceback
            raise UsageError(f"command {entry.name!r} ({entry.value}): cannot load "
                             f"({type(error).__name__}: {error})") from None
    return found


def _entry_points(group):
    return sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name)


def _import(module, what):
    if not module or ":" in module or module.startswith("."):
        raise UsageError(f"{what}: expected an importable module name such as my_defenses")
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and module.startswith(error.name):
            raise UsageError(f"{what}: no module named {error.name!r} on the Python path (install "
                             "it, or add its folder to PYTHONPATH)") from None
        raise UsageError(f"{what}: cannot import ({error})") from None
    except SystemExit as error:  # a plugin may not end the process: say which one tried
        raise UsageError(f"{what}: exited while being imported (sys.exit({error.code!r}))") \
            from None
    except Exception as error:  # noqa: BLE001 - one line naming the plugin, not its traceback
        raise UsageError(f"{what}: cannot import ({type(error).__name__}: {error})") from None
