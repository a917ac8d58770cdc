"""Matplotlib plots (Agg backend, PNG files) for the report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .runs import RunFolder

__all__ = ["plot_training", "plot_metrics_over_epochs", "plot_robustness", "plot_comparison"]

Series = list[tuple[float, float]]


#: the report's plot style, applied per figure (the process-wide matplotlib settings stay as they are)
STYLE = {"figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3, "font.size": 9}


def _figure(ncols: int = 1, figsize: tuple[float, float] = (6.4, 3.6)):
    """A figure and its axes, drawn by the Agg canvas: no pyplot, no backend switch, no global state."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=figsize)
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _save(fig, path: Path, rect=(0, 0, 1, 1)) -> Path:
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig.tight_layout(rect=rect)
        fig.savefig(path, format="png")
    return path


def plot_training(run: RunFolder, path: Path) -> Path | None:
    """Losses (left) and learning rate (right) over optimizer steps; per epoch when no steps file."""
    if run.steps:
        x_name = "step"
        rows = run.steps
        losses = run.loss_keys()
        xs = [r.get("step", i) for i, r in enumerate(rows)]
        lr = [(x, r["lr"]) for x, r in zip(xs, rows) if isinstance(r.get("lr"), (int, float))]
        loss_series = {k: [(x, r[k]) for x, r in zip(xs, rows) if isinstance(r.get(k), (int, float))] for k in losses}
    else:
        # no train_steps.jsonl: fall back to the per-epoch train_* keys of log.txt
        x_name = "epoch"
        rows = [r for r in run.epochs if any(k.startswith("train_") for k in r)]
        if not rows:
            return None
        xs = [r.get("epoch", i) for i, r in enumerate(rows)]
        lr = [(x, r["train_lr"]) for x, r in zip(xs, rows) if isinstance(r.get("train_lr"), (int, float))]
        keys = sorted({k for r in rows for k in r if k.startswith("train_") and k != "train_lr"})
        loss_series = {k[len("train_"):]: [(x, r[k]) for x, r in zip(xs, rows) if isinstance(r.get(k), (int, float))] for k in keys}
    if not loss_series and not lr:
        return None
    fig, (ax_loss, ax_lr) = _figure(2, figsize=(10, 3.4))
    for key, series in loss_series.items():
        if series:
            ax_loss.plot(*zip(*series), label=key, linewidth=1.2)
    ax_loss.set_xlabel(x_name)
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training losses")
    if loss_series:
        ax_loss.legend(fontsize=8)
    if lr:
        ax_lr.plot(*zip(*lr), color="tab:purple", linewidth=1.2)
    ax_lr.set_xlabel(x_name)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_title("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    return _save(fig, path)


def _split_levels(metrics: dict[str, Series]) -> list[tuple[str, dict[str, Series]]]:
    """Pixel-level and image-level metrics in separate panels; diagnostics (error bounds) left out."""
    shown = {k: v for k, v in metrics.items() if "error_bound" not in k and v}
    image = {k: v for k, v in shown.items() if k.startswith("image")}
    pixel = {k: v for k, v in shown.items() if k not in image}
    return [(title, group) for title, group in (("pixel level", pixel), ("image level", image)) if group]


def _metric_panels(panels: list[tuple[str, dict[str, Series]]], xlabel: str, title: str, path: Path, integer_x: bool,
                   reference: dict[str, float] | None = None):
    """One panel per group; ``reference``: a dashed horizontal line per metric (the clean image's
    value in a robustness plot), in the colour of the metric's curve."""
    fig, axes = _figure(len(panels), figsize=(5.6 * len(panels), 3.4))
    for ax, (panel, metrics) in zip(axes, panels):
        for metric, series in sorted(metrics.items()):
            series = sorted(series)
            (line,) = ax.plot(*zip(*series), marker="o", markersize=3, linewidth=1.2, label=metric)
            if reference and metric in reference:
                ax.axhline(reference[metric], color=line.get_color(), linestyle="--", linewidth=0.9, alpha=0.8)
        ax.set_xlabel(xlabel)
        if integer_x:
            ax.xaxis.set_major_locator(_integer_ticks())
        ax.set_title(f"{title}, {panel}")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_metrics_over_epochs(set_name: str, metrics: dict[str, Series], path: Path) -> Path | None:
    """Every metric of one test set over epochs (checkpoints): pixel-level and image-level panels."""
    panels = _split_levels(metrics)
    if not panels:
        return None
    return _metric_panels(panels, "epoch", set_name, path, integer_x=True)


def plot_robustness(attack: str, results: Sequence[dict], path: Path,
                    clean: dict[str, float] | None = None) -> Path | None:
    """Every metric against the strength of one attack; the clean image's value of each metric
    (``clean``, or this attack's own strength 0 / None result) as a dashed line."""
    metrics: dict[str, Series] = {}
    own_clean: dict[str, float] = {}
    for result in results:
        param = result.get("param")
        for metric, value in (result.get("metrics") or {}).items():
            if not isinstance(value, (int, float)) or value != value:
                continue
            if param in (None, 0):
                own_clean[metric] = float(value)
            else:
                metrics.setdefault(metric, []).append((float(param), float(value)))
    reference = own_clean or dict(clean or {})
    panels = _split_levels(metrics)
    if not panels:
        return None
    label = f"{attack} strength" + (" (dashed: the clean image)" if reference else "")
    return _metric_panels(panels, label, attack, path, integer_x=False, reference=reference)


def plot_comparison(metric: str, runs: dict[str, dict[str, Series]], path: Path) -> Path | None:
    """One metric over epochs for several runs (``{run label: {set: series}}``)."""
    lines = [(f"{label} · {set_name}", s) for label, sets in runs.items() for set_name, s in sets.items() if s]
    if not lines:
        return None
    # the legend goes below the axes: labels say what was tested and can be long
    legend_height = 0.15 + 0.16 * len(lines)  # inches
    fig, (ax,) = _figure(1, figsize=(6.4, 3.2 + legend_height))
    for label, series in lines:
        ax.plot(*zip(*series), marker="o", markersize=3, linewidth=1.2, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} over epochs, all runs")
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=1, frameon=False)
    return _save(fig, path, rect=(0, legend_height / (3.2 + legend_height), 1, 1))
