"""The package behaves like a Keras library (attributes, layer registration, nothing changed in the
user's process) and the CLI starts quietly."""
import os
import subprocess
import sys

from tests.conftest import REPO

ENV = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                         "FMFP_TF_TF_NOTICES")}
NOTICES = ("cuInit", "cuda drivers", "oneDNN", "absl::InitializeLog", "cpu_feature_guard")


def run_python(script, tmp_path):
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=ENV, cwd=tmp_path, timeout=300)


def test_saved_fm_model_loads_with_plain_keras_after_import_fmfp_tf(tmp_path):
    import keras
    import numpy as np

    from fmfp_tf import defend

    base = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(4)])
    path = tmp_path / "fm.keras"
    defend(base, "mask", size="25%", seed=3).save(path)
    # in a fresh process: import fmfp_tf, then plain Keras; the subpackages load on first use
    script = f"""
import sys
import fmfp_tf
assert "fmfp_tf.training" not in sys.modules and "fmfp_tf.attacks" not in sys.modules
import keras
model = keras.models.load_model({str(path)!r})
layer = model.layers[1]
assert type(layer).__name__ == "FeatureMask" and layer.size == 0.25, layer
import numpy as np
split = fmfp_tf.data.load("synthetic", split="test", limit=8, batch_size=8, image_size=(16, 16))
net = fmfp_tf.models.build("dnn4", split.image_shape, split.num_classes)
x, y = next(iter(split.dataset))
x_adv = fmfp_tf.attacks.pgd(net, x.numpy(), y.numpy(), eps="8/255", steps=2)
assert np.abs(x_adv - x.numpy()).max() <= 8 / 255 + 1e-6
print("ok")
"""
    result = run_python(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
    assert np is not None


def test_keras_imported_before_fmfp_tf_also_gets_the_layers(tmp_path):
    script = """
import keras
import fmfp_tf
assert keras.saving.get_registered_object("fmfp_tf>FeaturePadding") is not None
print("ok")
"""
    result = run_python(script, tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_start_up_filter_drops_notices_and_keeps_real_errors(tmp_path):
    script = """
import os
import fmfp_tf_cli_start as start
with start.native_notices_filtered():
    os.write(2, b"I0000 00:00:1.2 3 cudart_stub.cc:31] Could not find cuda drivers on "
                b"your machine\\n")
    os.write(2, b"E0000 00:00:1.2 3 cuda_platform.cc:52] failed call to cuInit: UNKNOWN\\n")
    os.write(2, b"E0000 00:00:1.2 3 some_op.cc:9] a real error\\n")
    raise SystemExit(3)
"""
    result = run_python(script, tmp_path)
    assert result.returncode == 3
    assert "a real error" in result.stderr
    assert "cuInit" not in result.stderr and "cuda drivers" not in result.stderr


def test_the_cli_starts_quietly_and_the_library_leaves_the_process_alone(tmp_path):
    # (train's help imports Keras and TensorFlow; the group's own help imports neither)
    result = subprocess.run([sys.executable, "-m", "fmfp_tf_cli_start", "train", "--help"],
                            capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    assert result.returncode == 0 and "--defense" in result.stdout, result.stderr[-2000:]
    for notice in NOTICES:
        assert notice not in result.stderr, result.stderr[:2000]
    # the library: no filter, no hook, no environment variable (the notices are TensorFlow's)
    script = """
import os, sys
import keras  # what Keras and its backend change on import is theirs
env = dict(os.environ)
import fmfp_tf
assert "fmfp_tf_cli_start" not in sys.modules and dict(os.environ) == env
print("ok")
"""
    library = run_python(script, tmp_path)
    assert library.returncode == 0 and library.stdout.strip() == "ok", library.stderr[-2000:]


def _import_graph(package_dir):
    """{module: modules of the package it imports}, at module level and inside functions."""
    import ast

    modules = {}
    for folder, _, files in os.walk(package_dir):
        for file in files:
            if file.endswith(".py"):
                path = os.path.join(folder, file)
                name = os.path.relpath(path[:-3], os.path.dirname(package_dir)).replace(os.sep, ".")
                modules[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {dep for dep in deps if dep in modules and dep != name}
    return graph


def test_no_import_circle_between_modules():
    graph = _import_graph(str(REPO / "fmfp_tf"))
    assert len(graph) > 40 and "fmfp_tf.training.loop" in graph["fmfp_tf.training.run"]

    def reaches(start, goal, seen):
        for dep in graph[start]:
            if dep == goal or (dep not in seen and not seen.add(dep) and reaches(dep, goal, seen)):
                return True
        return False

    circles = [name for name in graph if reaches(name, name, set())]
    assert circles == [], f"modules on an import circle: {circles}"
    # evaluation reads run directories through fmfp_tf.runs, never through training
    assert not any(dep.startswith("fmfp_tf.training") for dep in
                   graph["fmfp_tf.evaluation.robustness"])


# the house's floors, lowest first (docs/architecture.md, "Floors"): a module imports only
# from its own floor or below, at module level or inside a function
FLOORS = [
    ("foundation", ["fmfp_tf.errors", "fmfp_tf.version", "fmfp_tf.sizes", "fmfp_tf.backend",
                    "fmfp_tf.atomic", "fmfp_tf.registry", "fmfp_tf.settings", "fmfp_tf.plugins",
                    "fmfp_tf.budgets", "fmfp_tf.stopping",
                    "fmfp_tf.provenance"]),
    ("building blocks", ["fmfp_tf", "fmfp_tf.layers", "fmfp_tf.models", "fmfp_tf.attacks"]),
    ("registries and data", ["fmfp_tf.defense_registry", "fmfp_tf.optimization_registry",
                             "fmfp_tf.augmentation_registry", "fmfp_tf.defenses",
                             "fmfp_tf.data"]),
    ("configs and models on disk", ["fmfp_tf.config", "fmfp_tf.models_io", "fmfp_tf.plots"]),
    ("run directories", ["fmfp_tf.runs"]),
    ("jobs", ["fmfp_tf.training", "fmfp_tf.evaluation"]),
    ("workflows", ["fmfp_tf.reproduction", "fmfp_tf.export"]),
]


def _floor(module):
    """The floor of a module: that of the longest prefix naming it or a package above it."""
    best = None
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            below = module.startswith(prefix + ".") and prefix != "fmfp_tf"  # the facade: itself
            if (module == prefix or below) and (
                    best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    return None if best is None else best[0]


def test_no_import_goes_from_a_lower_floor_to_a_higher_one():
    graph = _import_graph(str(REPO / "fmfp_tf"))
    unplaced = sorted(name for name in graph if _floor(name) is None)
    assert unplaced == [], f"modules on no floor (add them to FLOORS and the docs): {unplaced}"
    upward = sorted(f"{name} ({FLOORS[_floor(name)][0]}) -> {dep} ({FLOORS[_floor(dep)][0]})"
                    for name, deps in graph.items() for dep in deps
                    if _floor(dep) > _floor(name) and not dep.startswith(name + "."))
    assert upward == [], "imports from a lower floor to a higher one:\n" + "\n".join(upward)
    # the CLI sits on top: nothing in the library imports it
    assert not any(dep.startswith("fmfp_tf.cli") for deps in graph.values() for dep in deps)


def test_every_declared_dependency_is_used_by_the_library():
    import ast
    import re

    setup = (REPO / "setup.py").read_text()
    required = re.findall(r'^\s+"([A-Za-z0-9_.-]+)[<>=!~;\s"]', setup.split("install_requires")[1]
                          .split("]")[0], re.M)
    # TensorFlow is the tensorflow extra's, with what only it needs: a JAX user pulls none
    backend_extra = re.findall(r'^\s+"([A-Za-z0-9_.-]+)[<>=!~;\s"]',
                               setup.split("TENSORFLOW = [")[1].split("]")[0], re.M)
    assert "tensorflow" not in required and "tensorflow" in backend_extra
    assert "tensorflow-datasets" not in required + backend_extra
    required += backend_extra
    # the evidence of use: the module imported, or (tensorboard) the API it provides to TF
    evidence = {"pillow": "import PIL", "pyyaml": "import yaml", "tensorboard": "tf.summary."}
    sources = "\n".join(path.read_text() for folder in ("fmfp_tf", "cli")
                        for path in (REPO / folder).rglob("*.py"))
    imported = set()
    for node in ast.walk(ast.parse(sources)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.split(".")[0])
    unused = []
    for name in required:
        if name in evidence:
            used = evidence[name] in sources or evidence[name].split()[-1] in imported
        else:
            used = name.replace("-", "_") in imported
        if not used:
            unused.append(name)
    assert unused == [], f"declared but never used by the library: {unused}"


def test_the_names_config_checks_are_the_names_training_knows():
    """config.py names precisions without TensorFlow, training.precision holds what each does;
    every schedule and optimizer the registries name resolves to a builder that builds."""
    from fmfp_tf import config, optimization_registry
    from fmfp_tf.training import precision, schedules

    for schedule in optimization_registry.SCHEDULES.names():
        for name in optimization_registry.OPTIMIZERS.names():
            decay = 0.0 if name == "adam" else 1e-4  # adam refuses a decay (use adamw)
            built = schedules.optimizer(config.TrainConfig(schedule=schedule, optimizer=name,
                                                           weight_decay=decay), 10)
            assert built.__class__.__name__.lower() == name
    for name in config.PRECISIONS:
        precision.resolve(name)  # every name the config accepts, training resolves


def test_the_private_keras_base_of_the_layers_still_gives_what_they_rely_on():
    """layers/base.py subclasses Keras's (not public) BaseImagePreprocessingLayer, pinned to the
    Keras versions setup.py allows. A Keras release that moves it, or drops what the defense
    layers override or call, fails here by name rather than deep inside a model."""
    import keras
    from keras.src.layers.preprocessing.image_preprocessing import (
        base_image_preprocessing_layer as base)

    cls = base.BaseImagePreprocessingLayer
    for name in ("get_random_transformation", "transform_images", "transform_labels",
                 "transform_bounding_boxes", "transform_segmentation_masks",
                 "transform_single_image", "call", "build", "_get_seed_generator"):
        assert callable(getattr(cls, name, None)), f"Keras {keras.__version__} lacks {name}"
    from fmfp_tf.layers.base import RandomImageDefense

    assert issubclass(RandomImageDefense, cls)
    layer = keras.layers.RandomErasing() if hasattr(keras.layers, "RandomErasing") else None
    assert layer is None or isinstance(layer, cls)  # Keras's own layers still stand on it


def test_a_missing_or_unknown_keras_backend_is_one_line():
    import importlib.util
    import subprocess
    import sys

    cases = [("bogus", "KERAS_BACKEND='bogus' is no Keras backend")]
    if importlib.util.find_spec("torch") is None:
        cases.append(("torch", "Keras's backend torch is not installed"))
    for backend, message in cases:
        env = {**os.environ, "KERAS_BACKEND": backend}
        done = subprocess.run([sys.executable, "-m", "fmfp_tf_cli_start", "train", "--help"],
                              capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 1 and message in done.stderr, done.stderr[-1500:]
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
        # the group's own help needs no backend: it says what to run before one is installed
        shown = subprocess.run([sys.executable, "-m", "fmfp_tf_cli_start", "--help"],
                               capture_output=True, text=True, timeout=300, env=env)
        assert shown.returncode == 0 and "Commands:" in shown.stdout, shown.stderr[-1500:]


def test_sigterm_while_the_cli_starts_is_one_line_not_a_silent_death():
    import signal
    import subprocess
    import sys
    import time

    import pytest

    process = subprocess.Popen([sys.executable, "-m", "fmfp_tf_cli_start", "train", "--help"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the signal goes once the CLI's handler is in place (Linux shows the caught signals in
    # /proc), so a loaded machine's slow interpreter start is not mistaken for a silent death;
    # importing Keras and TensorFlow, after it, takes seconds
    deadline = time.time() + 60
    while process.poll() is None and time.time() < deadline:
        try:
            with open(f"/proc/{process.pid}/status") as status:
                caught = int(next(line.split()[1] for line in status
                                  if line.startswith("SigCgt:")), 16)
        except (OSError, StopIteration):
            caught = 1 << (signal.SIGTERM - 1)  # no /proc: send it as before, after a pause
            time.sleep(0.3)
        if caught & (1 << (signal.SIGTERM - 1)):
            break
        time.sleep(0.01)
    if process.poll() is not None:
        pytest.skip("the CLI started before the signal could be sent")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-1500:]
    assert err.strip() == "Error: stopped by signal 15 while starting; nothing was written"
