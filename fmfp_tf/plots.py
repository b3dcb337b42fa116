"""Figures written next to results (matplotlib, no display needed)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from fmfp_tf import atomic  # noqa: E402


def save_figure(figure, path):
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight", format=path.rsplit(".", 1)[-1])
    plt.close(figure)


def history_plot(history, path, title=""):
    """Loss and accuracy per epoch, train and test."""
    epochs = [record["epoch"] for record in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    left.plot(epochs, [r["loss"] for r in history], "o-", label="train")
    if history and "test_loss" in history[0]:
        left.plot(epochs, [r["test_loss"] for r in history], "s-", label="test")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    right.plot(epochs, [r["accuracy"] for r in history], "o-", label="train")
    if history and "test_accuracy" in history[0]:
        right.plot(epochs, [r["test_accuracy"] for r in history], "s-", label="test")
    right.set_xlabel("epoch")
    right.set_ylabel("accuracy")
    right.set_ylim(0, 1)
    right.legend()
    figure.suptitle(title)
    save_figure(figure, path)


def line_plot(series, path, xlabel, ylabel, title=""):
    """`series`: {label: [(x, y), ...]}; one line each."""
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for label, points in series.items():
        points = sorted(points)
        axis.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title)
    save_figure(figure, path)
