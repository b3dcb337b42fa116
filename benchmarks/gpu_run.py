"""The GPU run, prepared: times the defense layer's train step, APGD-CE and AutoAttack on a
machine with JAX (or PyTorch) and no TensorFlow, in one call, from a bundle built here.

Here (TensorFlow machine), build the bundle: this package's wheel, Keras's wheels, the `.keras`
models to attack and a sample of test images (about 20 MiB for two models):

    python benchmarks/gpu_run.py bundle --models RUN_DIR [RUN_DIR ...] --out gpu-bundle

To train (N-FGSM + EMA through `AdversarialModel.fit`, or `--method trades --beta 6`,
resumable across calls; bundle with `--train-images 15000`):

    OUT=out python benchmarks/gpu_run.py train --bundle gpu-bundle --model wrn16_4 \
        --epochs 30 --minutes 8 [--resume out-of-the-last-call/train]

There (or here, on JAX CPU, to check the script), one command:

    python benchmarks/gpu_run.py measure --bundle gpu-bundle [--n 1000] [--queries 5000]

`measure` installs whatever of Keras and this package the machine lacks from the bundle's wheels
(no network), into a virtual environment that sees the machine's JAX, then prints one JSON
document (GPU name, versions, images/s, robust accuracy) and writes it to $OUT/gpu_results.json
when $OUT is set.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS = 8 / 255


def bundle(models, out, n, python_version, train_images=0):
    """Wheels, models and images into `out` (built on a machine with TensorFlow); with
    `train_images`, that many training images too (for `train`)."""
    import numpy as np

    sys.path.insert(0, ROOT)
    from fmfp_tf import data, runs
    from fmfp_tf.models_io import resolve_model_path

    wheels = os.path.join(out, "wheels")
    os.makedirs(wheels, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, ROOT],
                   check=True)
    import keras

    # Keras and what it needs; binary wheels for the device's Python version
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", wheels,
                    "--only-binary=:all:", "--python-version", python_version,
                    "--platform", "manylinux2014_x86_64", f"keras=={keras.__version__}"],
                   check=True)
    for wheel in glob.glob(os.path.join(wheels, "*")):
        # the device brings its own numpy and JAX; a wheel for another numpy would shadow it
        if os.path.basename(wheel).startswith(("numpy-", "jax", "ml_dtypes")):
            os.remove(wheel)
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    for index, run_dir in enumerate(models):
        path = resolve_model_path(run_dir)
        name = os.path.basename(os.path.normpath(run_dir)).replace(".keras", "")
        shutil.copy(path, os.path.join(out, "models", f"{index}-{name}.keras"))
    config = runs.read_config(os.path.dirname(resolve_model_path(models[0])))
    arrays = data.load_arrays(config.dataset, config.data_dir, "test", (32, 32))
    order = np.random.default_rng(0).permutation(len(arrays.labels))[:n]
    np.savez_compressed(os.path.join(out, "images.npz"), x=arrays.images[order],
                        y=arrays.labels[order])
    if train_images:
        train = data.load_arrays(config.dataset, config.data_dir, "train", (32, 32))
        chosen = np.random.default_rng(1).permutation(len(train.labels))[:train_images]
        np.savez_compressed(os.path.join(out, "train.npz"), x=train.images[chosen],
                            y=train.labels[chosen])
    size = sum(os.path.getsize(f) for f in glob.glob(os.path.join(out, "**"), recursive=True)
               if os.path.isfile(f))
    print(f"{out}: {size / 2**20:.1f} MiB")


def _installed(python):
    check = "import keras, fmfp_tf.attacks"
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "jax"))
    return subprocess.run([python, "-c", check], env=env, capture_output=True).returncode == 0


def ensure_installed(bundle_dir):
    """A Python that imports Keras and this package: this one, or a virtual environment that
    sees this one's packages (JAX, CUDA) with the bundle's wheels added, offline."""
    if _installed(sys.executable):
        return sys.executable
    venv = os.path.join(tempfile.gettempdir(), "fmfp-gpu-venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    wheels = os.path.join(bundle_dir, "wheels")
    package = glob.glob(os.path.join(wheels, "fmfp_tf-*.whl"))
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheels,
                    "keras", *package, "--no-deps"], check=True)
    # Keras's own dependencies, from the bundle, where the machine lacks them
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheels,
                    "keras"], check=False)
    if not _installed(python):
        raise SystemExit("could not install Keras and fmfp_tf from the bundle's wheels")
    return python


def measure(bundle_dir, n, queries, steps):
    import keras
    import numpy as np

    import fmfp_tf
    from fmfp_tf import attacks, backend
    from fmfp_tf.models_io import load_model

    images = np.load(os.path.join(bundle_dir, "images.npz"))
    x = images["x"][:n].astype(np.float32) / 255.0
    y = images["y"][:n].astype(np.int32)
    results = {"gpus": backend.current().gpu_names(), "backend": keras.backend.backend(),
               "keras": keras.__version__, "images": int(len(y)), "eps": "8/255", "models": {}}
    for path in sorted(glob.glob(os.path.join(bundle_dir, "models", "*.keras"))):
        model = load_model(path)
        row = results["models"][os.path.basename(path)] = {}
        row["train_step"] = _train_step(model, x, y)
        for name, run in (
                ("apgd-ce", lambda a, b: attacks.apgd(model, a, b, eps=EPS, steps=steps)),
                ("autoattack", lambda a, b: attacks.autoattack(model, a, b, eps=EPS,
                                                               steps=steps, queries=queries))):
            run(x[:8], y[:8])  # compiles
            start = time.perf_counter()
            x_adv = run(x, y)
            seconds = time.perf_counter() - start
            robust = float((attacks.common.predict_logits(model, x_adv).argmax(-1) == y).mean())
            row[name] = {"seconds": round(seconds, 2), "images_per_s": round(len(y) / seconds, 1),
                         "robust_accuracy": robust}
            print(json.dumps({os.path.basename(path): {name: row[name]}}), flush=True)
        row["devices"] = _devices(path, x, y, steps)
    return results


def _devices(path, x, y, steps):
    """APGD-CE on one device against all local devices (a DataParallel mesh), side by side:
    images/s of each and whether every image's example is the same."""
    import numpy as np

    from fmfp_tf import attacks
    from fmfp_tf.attacks import devices
    from fmfp_tf.models_io import load_model

    out = {}
    for label, wanted in (("one", 1), ("all", "all")):
        with devices.data_parallel(wanted) as count:
            model = load_model(path)  # inside: mirrored where the backend needs it
            attacks.apgd(model, x[:2 * count], y[:2 * count], eps=EPS, steps=steps)  # compiles
            start = time.perf_counter()
            x_adv = attacks.apgd(model, x, y, eps=EPS, steps=steps)
            seconds = time.perf_counter() - start
        out[label] = {"devices": count, "images_per_s": round(len(y) / seconds, 1),
                      "examples": x_adv}
    same = bool(np.abs(out["one"].pop("examples") - out["all"].pop("examples")).max() < 1e-5)
    out["same_examples"] = same
    out["speedup"] = round(out["all"]["images_per_s"] / out["one"]["images_per_s"], 2)
    print(json.dumps({os.path.basename(path): {"devices": out}}), flush=True)
    return out


def train(bundle_dir, out, model_name, epochs, minutes, batch, eps, resume, limit, n_eval,
          method="nfgsm", beta=6.0):
    """`method` (N-FGSM by default; TRADES with `beta`) + EMA training of `model_name` through
    `AdversarialModel.fit` (any backend; JAX on the device machine), resumable across calls: after every epoch the weights, the EMA weights
    and the epoch reached are written to OUT/train/; a later call given them (--resume) goes on
    from there. Stops before `minutes` run out; once every epoch is done, evaluates the EMA
    weights with autoattack-fast on the bundle's test images."""
    import keras
    import numpy as np

    from fmfp_tf import models
    from fmfp_tf.attacks import autoattack_fast, common
    from fmfp_tf.training import AdversarialModel

    started = time.time()
    arrays = np.load(os.path.join(bundle_dir, "train.npz"))
    x = arrays["x"].astype(np.float32) / 255.0
    y = arrays["y"].astype(np.int32)
    if limit:
        x, y = x[:limit], y[:limit]
    net = models.build(model_name, x.shape[1:], int(y.max()) + 1)
    wrapped = AdversarialModel(net, method=method, eps=eps, beta=beta)
    optimizer = keras.optimizers.Adam(1e-3, use_ema=True, ema_momentum=0.999)
    wrapped.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    state = {"epoch": 0, "history": [], "seconds": 0.0, "method": method, "beta": beta}
    if resume:
        with open(os.path.join(resume, "state.json")) as handle:
            state = json.load(handle)
        kept_recipe = (state.get("method", "nfgsm"), state.get("beta", 6.0))
        if kept_recipe != (method, beta):
            sys.exit(f"--resume {resume}: that run trained --method {kept_recipe[0]} --beta "
                     f"{kept_recipe[1]}, not --method {method} --beta {beta}")
        kept = np.load(os.path.join(resume, "weights.npz"))
        net.set_weights([kept[f"w{i}"] for i in range(len(net.weights))])
        optimizer.build(wrapped.trainable_variables)
        ema = np.load(os.path.join(resume, "ema.npz"))
        for index, variable in enumerate(optimizer._model_variables_moving_average):
            variable.assign(ema[f"e{index}"])
    target = os.path.join(out, "train")
    os.makedirs(target, exist_ok=True)

    class Checkpoint(keras.callbacks.Callback):
        """After every epoch: the weights, the EMA weights and the epoch reached, written before
        Keras's fit puts the EMA weights in place at its end; stops before the time runs out."""

        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.time()

        def on_epoch_end(self, epoch, logs=None):
            state["epoch"] += 1
            state["history"].append(round(float(logs["loss"]), 4))
            state["seconds"] += time.time() - self.began
            np.savez(os.path.join(target, "weights.npz"),
                     **{f"w{i}": w for i, w in enumerate(net.get_weights())})
            # (the optimizer's EMA copies: private in Keras 3.15, the only place they live)
            np.savez(os.path.join(target, "ema.npz"), **{
                f"e{i}": common.numpy(v) for i, v in
                enumerate(optimizer._model_variables_moving_average)})
            with open(os.path.join(target, "state.json"), "w") as handle:
                json.dump(state, handle)
            print(json.dumps({"epoch": state["epoch"], "loss": state["history"][-1],
                              "seconds": round(time.time() - self.began, 1)}), flush=True)
            per_epoch = state["seconds"] / len(state["history"])
            if time.time() - started + per_epoch > 60 * minutes:
                self.model.stop_training = True

    if state["epoch"] < epochs:
        wrapped.fit(x, y, batch_size=batch, epochs=epochs - state["epoch"], verbose=0,
                    callbacks=[Checkpoint()])
    result = dict(state, model=model_name, images=int(len(y)), done=state["epoch"] >= epochs)
    if result["done"]:  # fit has put the EMA weights in place
        test = np.load(os.path.join(bundle_dir, "images.npz"))
        xt = test["x"][:n_eval].astype(np.float32) / 255.0
        yt = test["y"][:n_eval].astype(np.int32)
        clean = float((common.predict_logits(net, xt).argmax(-1) == yt).mean())
        x_adv = autoattack_fast(net, xt, yt, eps=eps)
        robust = float((common.predict_logits(net, x_adv).argmax(-1) == yt).mean())
        result.update(clean_accuracy=clean, autoattack_fast_accuracy=robust, n_eval=len(yt))
        net.save(os.path.join(target, f"{model_name}.keras"))
    print(json.dumps(result), flush=True)
    return result


def _train_step(model, x, y, batch=128, steps=20):
    """Images/s of a compiled train step of the model alone and with FeatureMask before it."""
    import keras

    from fmfp_tf import FeatureMask

    rates = {}
    for name, layers in (("bare", []), ("feature_mask", [FeatureMask(0.2, seed=0)])):
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        net = keras.Sequential([keras.Input(x.shape[1:]), *layers, clone])
        net.compile(keras.optimizers.Adam(1e-4),
                    keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        reps = max(1, (batch * steps) // len(x) + 1)
        xs, ys = (keras.ops.convert_to_numpy(a) for a in (x, y))
        import numpy as np

        xs, ys = np.tile(xs, (reps, 1, 1, 1))[:batch * steps], np.tile(ys, reps)[:batch * steps]
        net.fit(xs[:batch * 2], ys[:batch * 2], batch_size=batch, epochs=1, verbose=0)
        start = time.perf_counter()
        net.fit(xs, ys, batch_size=batch, epochs=1, verbose=0)
        rates[name] = round(len(xs) / (time.perf_counter() - start), 1)
    return {"images_per_s": rates, "batch_size": batch}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("bundle")
    build.add_argument("--models", nargs="+", required=True)
    build.add_argument("--out", default="gpu-bundle")
    build.add_argument("--n", type=int, default=1000)
    build.add_argument("--python-version", default=f"{sys.version_info[0]}.{sys.version_info[1]}")
    build.add_argument("--train-images", type=int, default=0,
                       help="training images to bundle for `train` (15000: about 25 MiB)")
    learn = commands.add_parser("train")
    learn.add_argument("--bundle", default="gpu-bundle")
    learn.add_argument("--model", default="wrn16_4")
    learn.add_argument("--epochs", type=int, default=30)
    learn.add_argument("--minutes", type=float, default=8.0)
    learn.add_argument("--batch-size", type=int, default=128)
    learn.add_argument("--eps", type=float, default=8 / 255)
    learn.add_argument("--method", default="nfgsm",
                       choices=("fgsm", "pgd", "fast", "nfgsm", "trades"))
    learn.add_argument("--beta", type=float, default=6.0, help="TRADES's KL weight")
    learn.add_argument("--resume", help="OUT/train of an earlier call")
    learn.add_argument("--limit", type=int, default=0, help="train on this many images only")
    learn.add_argument("--n-eval", type=int, default=1000)
    learn.add_argument("--installed", action="store_true", help=argparse.SUPPRESS)
    run = commands.add_parser("measure")
    run.add_argument("--bundle", default="gpu-bundle")
    run.add_argument("--n", type=int, default=1000)
    run.add_argument("--queries", type=int, default=5000)
    run.add_argument("--steps", type=int, default=100)
    run.add_argument("--installed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.command == "bundle":
        bundle(args.models, args.out, args.n, args.python_version, args.train_images)
        return
    os.environ.setdefault("KERAS_BACKEND", "jax")
    if not args.installed:
        python = ensure_installed(args.bundle)
        if python != sys.executable:
            raise SystemExit(subprocess.run([python, *sys.argv, "--installed"]).returncode)
    if args.command == "train":
        train(args.bundle, os.environ.get("OUT", "."), args.model, args.epochs, args.minutes,
              args.batch_size, args.eps, args.resume, args.limit, args.n_eval,
              args.method, args.beta)
        return
    results = measure(args.bundle, args.n, args.queries, args.steps)
    text = json.dumps(results, indent=1)
    print(text)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_results.json"), "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
