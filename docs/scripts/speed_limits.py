"""Per-class-group accuracy of GTSRB models: the eight speed-limit signs against the rest.

The speed-limit classes differ only in the digits at the centre of the sign, which a 20-px feature
mask on a 32-px image always hides during training (docs/paper.md). Usage:

    python docs/scripts/speed_limits.py --data-dir ../shared/data/gtsrb runs/gt/none runs/gt/mask20
"""
import argparse

import numpy as np

SPEED_LIMITS = [0, 1, 2, 3, 4, 5, 7, 8]  # 20, 30, 50, 60, 70, 80, 100, 120 km/h (6 is "end of 80")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="GTSRB in its official layout")
    parser.add_argument("runs", nargs="+", help="run directories or .keras files")
    args = parser.parse_args()

    from fmfp_tf.data import load_arrays
    from fmfp_tf.models_io import load_model

    test = load_arrays("gtsrb", args.data_dir, "test")
    images, labels = test.images.astype("float32") / 255.0, test.labels
    speed = np.isin(labels, SPEED_LIMITS)
    print("| model | all | speed limits | other classes | wrong speed limits read as another |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for run in args.runs:
        predicted = load_model(run).predict(images, batch_size=1024, verbose=0).argmax(axis=1)
        right = predicted == labels
        confused = np.isin(predicted[speed & ~right], SPEED_LIMITS).mean()
        print(f"| {run} | {100 * right.mean():.2f} % | {100 * right[speed].mean():.2f} % | "
              f"{100 * right[~speed].mean():.2f} % | {100 * confused:.1f} % |")


if __name__ == "__main__":
    main()
