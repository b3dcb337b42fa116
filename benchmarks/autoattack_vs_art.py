"""Our APGD-CE, APGD-DLR and Square against IBM ART's on the same model and the same images.

Robust accuracy (lower = stronger attack; ours should be at most 1 point above ART's) and images
per second (target: ours >= 5x ART's), L-inf eps 8/255, each attack run once, side by side in one
process. ART is a benchmark-only dependency: `pip install adversarial-robustness-toolbox==1.20.1`.

    python benchmarks/autoattack_vs_art.py --model RUN_DIR [--n 300] [--queries 1000]

Without --model, an undefended dnn1 is trained first (GTSRB from ../shared/data when present,
else the synthetic set), which takes minutes.
"""
import argparse
import tempfile
import time

import common
import numpy as np

EPS = 8 / 255


def trained_run(tmp):
    from fmfp_tf.config import TrainConfig
    from fmfp_tf.training import train

    root = common.shared_data("gtsrb")
    config = TrainConfig(dataset="gtsrb" if root else "synthetic", data_dir=root, model="dnn1",
                         epochs=3, train_limit=10000 if root else None, seed=0)
    train(config, tmp, verbose=0)
    return tmp


def ours(model, x, y, steps, queries):
    from fmfp_tf import attacks

    runs = {
        "APGD-CE": lambda: attacks.apgd(model, x, y, eps=EPS, loss="ce", steps=steps),
        "APGD-DLR": lambda: attacks.apgd(model, x, y, eps=EPS, loss="dlr", steps=steps),
        "Square": lambda: attacks.square(model, x, y, eps=EPS, queries=queries),
    }
    return {name: timed(run) for name, run in runs.items()}


def art_attacks(model, x, y, steps, queries, num_classes):
    import keras
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
    from art.estimators.classification import TensorFlowV2Classifier

    classifier = TensorFlowV2Classifier(
        model, nb_classes=num_classes, input_shape=x.shape[1:], clip_values=(0.0, 1.0),
        loss_object=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    one_hot = np.eye(num_classes, dtype=np.float32)[y]

    def apgd(loss_type):
        # eps_step 2 eps: the paper's initial step size, as in our apgd
        attack = AutoProjectedGradientDescent(
            classifier, norm=np.inf, eps=EPS, eps_step=2 * EPS, max_iter=steps, targeted=False,
            nb_random_init=1, batch_size=256, loss_type=loss_type, verbose=False)
        return attack.generate(x, one_hot)

    def square():
        attack = SquareAttack(classifier, norm=np.inf, eps=EPS, max_iter=queries, p_init=0.8,
                              nb_restarts=1, batch_size=256, verbose=False)
        return attack.generate(x, one_hot)

    runs = {"APGD-CE": lambda: apgd("cross_entropy"),
            "APGD-DLR": lambda: apgd("difference_logits_ratio"), "Square": square}
    return {name: timed(run) for name, run in runs.items()}


def timed(run):
    start = time.perf_counter()
    x_adv = run()
    return x_adv, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="a run directory or .keras file (default: train one)")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    import art

    from fmfp_tf.evaluation.robustness import load_entry, test_images

    with tempfile.TemporaryDirectory() as tmp:
        entry = load_entry(args.model or trained_run(tmp))
        x, y, num_classes, dataset = test_images(entry, args.n)
        model = entry.model
        # one warm-up call each, so neither side is charged for tracing its graphs
        from fmfp_tf import attacks

        attacks.apgd(model, x[:8], y[:8], eps=EPS, steps=2)
        attacks.square(model, x[:8], y[:8], eps=EPS, queries=2)
        mine = ours(model, x, y, args.steps, args.queries)
        theirs = art_attacks(model, x, y, args.steps, args.queries, num_classes)

    def accuracy(x_adv):
        return 100 * float((model.predict(x_adv, verbose=0).argmax(-1) == y).mean())

    clean = accuracy(x)
    lines = [f"{entry.name} ({dataset}), {len(y)} test images, L-inf eps 8/255; "
             f"APGD {args.steps} steps, 1 restart; Square {args.queries} queries, p_init 0.8. "
             f"Clean accuracy {clean:.2f} %.", "",
             "| attack | ours: robust acc. % | ART 1.20: robust acc. % | ours - ART (points) | "
             "ours img/s | ART img/s | speed ours / ART |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in mine:
        (ours_adv, ours_s), (art_adv, art_s) = mine[name], theirs[name]
        assert np.abs(ours_adv - x).max() <= EPS + 1e-5, name
        ours_acc, art_acc = accuracy(ours_adv), accuracy(art_adv)
        lines.append(f"| {name} | {ours_acc:.2f} | {art_acc:.2f} | {ours_acc - art_acc:+.2f} | "
                     f"{len(y) / ours_s:.1f} | {len(y) / art_s:.1f} | {art_s / ours_s:.1f}x |")
    lines += ["", f"ART version {art.__version__}. Targets: ours at most 1 point above ART "
              "(lower is a stronger attack), ours >= 5x ART's images/s."]
    command = "python benchmarks/autoattack_vs_art.py" + (
        f" --model {args.model}" if args.model else "") + (
        f" --n {args.n}" if args.n != 300 else "") + (
        f" --queries {args.queries}" if args.queries != 1000 else "") + (
        f" --steps {args.steps}" if args.steps != 100 else "")
    # one section per model: the undefended and the adversarially trained one side by side
    section = "APGD and Square against IBM ART" + ("" if not args.model else
                                                   f": {entry.name}")
    common.record(section, lines, command)


if __name__ == "__main__":
    main()
