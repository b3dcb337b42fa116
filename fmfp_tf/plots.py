"""Figures written next to results (matplotlib, no display needed).

Figures are made with matplotlib's object API, not pyplot: no backend is chosen for the whole
process, no figure is kept open, and matplotlib is imported only when a figure is drawn.
"""
from fmfp_tf import atomic


def _subplots(*args, **kwargs):
    """(figure, axes) like pyplot.subplots, on a figure that belongs to no pyplot state."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=kwargs.pop("figsize", None))
    return figure, figure.subplots(*args, **kwargs)


def save_figure(figure, path):
    with atomic.atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight", format=path.rsplit(".", 1)[-1])


def history_plot(history, path, title=""):
    """Loss and accuracy per epoch, train and test."""
    epochs = [record["epoch"] for record in history]
    figure, (left, right) = _subplots(1, 2, figsize=(9, 3.4))
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
    """`series`: {label: [(x, y), ...]} or [(x, y, low, high), ...] (a shaded interval); one
    line each. The legend stands beside the axes, never over the lines."""
    figure, axis = _subplots(figsize=(5.5, 3.6))
    for label, points in series.items():
        points = sorted(points)
        line, = axis.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label)
        if points and len(points[0]) == 4:
            axis.fill_between([p[0] for p in points], [p[2] for p in points],
                              [p[3] for p in points], color=line.get_color(), alpha=0.15,
                              linewidth=0)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axis.set_title(title)
    save_figure(figure, path)


def grouped_bars(panels, path, ylabel, title=""):
    """`panels`: {panel title: {group label: {bar label: value, (value, low, high) or None}}};
    one subplot per panel; a (value, low, high) bar carries its interval as an error bar.

    Missing values (None) leave a gap, so a cell that was not run is visibly absent. The legend
    stands beside the panels, never over the bars.
    """
    count = max(len(panels), 1)
    figure, axes = _subplots(1, count, figsize=(max(4.5, 3.2 * count), 3.6), squeeze=False)
    for axis, (panel, groups) in zip(axes[0], panels.items()):
        bar_labels = list(dict.fromkeys(b for bars in groups.values() for b in bars))
        width = 0.8 / max(len(bar_labels), 1)
        for k, bar in enumerate(bar_labels):
            xs, ys, errors = [], [], []
            for i, bars in enumerate(groups.values()):
                value = bars.get(bar)
                if value is not None:
                    value, low, high = value if isinstance(value, tuple) else (value,) * 3
                    xs.append(i + (k - (len(bar_labels) - 1) / 2) * width)
                    ys.append(value)
                    errors.append((value - low, high - value))
            axis.bar(xs, ys, width, label=bar,
                     yerr=list(zip(*errors)) if any(e != (0, 0) for e in errors) else None,
                     error_kw={"elinewidth": 0.8, "capsize": 2})
        axis.set_xticks(range(len(groups)))
        axis.set_xticklabels(list(groups), rotation=45, ha="right", fontsize=7)
        axis.set_ylim(0, 105)
        axis.set_title(panel, fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.suptitle(title)
    save_figure(figure, path)
