"""Pictures of what a model learned: training curves, a sweep's validation curves, attention heat-maps,
scores by source length.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``, no pyplot): no
display is needed, no global figure state is kept, and PNGs are rendered by the Agg backend.
Every plot function returns its Figure, so callers (and tests) can inspect axes before saving.
"""
import csv
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from seq2seq.atomic_files import atomic_binary

log = logging.getLogger(__name__)

Series = tuple[list[float], list[float]]  # steps, values

# Panels of the training curves: title, y label, log scale, [(legend label, metrics.csv columns)].
# A series is drawn from the first of its columns that the run logged (ThroughputMonitor logs
# train/items_per_sec summed over devices only when there are several).
PANELS = [
    ("loss", "label-smoothed loss (val: NLL)", False, [("train", ["train/loss"]), ("val", ["val/loss"])]),
    ("perplexity", "perplexity", True, [("train", ["train/ppl"]), ("val", ["val/ppl"])]),
    ("validation BLEU", "BLEU", False, [("val (greedy)", ["val/bleu"])]),
    ("validation chrF", "chrF", False, [("val (greedy)", ["val/chrf"])]),
    ("learning rate", "learning rate", True, [("lr", ["lr-Adam"])]),
    ("throughput", "target tokens / s", False,
     [("train", ["train/items_per_sec", "train/device/items_per_sec"])]),
]


def read_metrics(path: Path) -> dict[str, Series]:
    """Lightning CSVLogger metrics.csv -> {column: (steps, values)} over the rows that have a value."""
    series: dict[str, Series] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if not row.get("step"):
                continue
            step = float(row["step"])
            for column, value in row.items():
                if column in ("step", "epoch") or value in ("", None):
                    continue
                steps, values = series.setdefault(column, ([], []))
                steps.append(step)
                values.append(float(value))
    return series


def training_curves(metrics: Path, title: str | None = None) -> Figure:
    """A 2 x 3 grid against the training step; a panel whose columns were not logged says so."""
    series = read_metrics(metrics)
    fig = Figure(figsize=(15, 8.5), layout="constrained")
    fig.suptitle(title or f"training curves ({metrics})")
    for ax, (name, ylabel, log_scale, lines) in zip(fig.subplots(2, 3).flat, PANELS):
        ax.set(title=name, xlabel="step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        drawn = 0
        for label, columns in lines:
            column = next((c for c in columns if c in series), None)
            if column is None:
                continue
            steps, values = series[column]
            few = len(values) <= 50  # validation points: mark each one
            ax.plot(steps, values, "o-" if few else "-", label=label, markersize=4, linewidth=1.5 if few else 1)
            drawn += 1
            if log_scale and min(values) > 0:
                ax.set_yscale("log")
        if drawn > 1:
            ax.legend()
        if not drawn:
            ax.text(0.5, 0.5, "not logged (yet)", ha="center", va="center", transform=ax.transAxes, color="grey")
    return fig


def sweep_curves(curves: dict[str, Series], title: str = "validation BLEU") -> Figure:
    """One line per job: validation BLEU (greedy) against the training step, labelled with the job."""
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax: Axes = fig.subplots()
    for label, (steps, values) in curves.items():
        ax.plot(steps, values, "o-" if len(values) <= 50 else "-", label=label, markersize=3, linewidth=1.2)
    ax.set(title=title, xlabel="step", ylabel="val BLEU (greedy)")
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no job logged validation BLEU", ha="center", va="center", transform=ax.transAxes,
                color="grey")
    return fig


def attention_map(src_pieces: Sequence[str], tgt_pieces: Sequence[str], weights: torch.Tensor,
                  title: str = "attention") -> Figure:
    """Heat-map of weights (T, S): one row per target piece, one column per source piece."""
    if tuple(weights.shape) != (len(tgt_pieces), len(src_pieces)):
        raise ValueError(f"weights {tuple(weights.shape)} do not fit {len(tgt_pieces)} target x "
                         f"{len(src_pieces)} source pieces")
    width, height = 2.5 + 0.32 * len(src_pieces), 1.8 + 0.28 * len(tgt_pieces)
    fig = Figure(figsize=(min(width, 40), min(height, 40)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(weights.float().cpu().numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(src_pieces)), labels=src_pieces, rotation=90)
    ax.set_yticks(range(len(tgt_pieces)), labels=tgt_pieces)
    ax.set(title=title, xlabel="source pieces", ylabel="target pieces")
    fig.colorbar(image, ax=ax, label="attention weight", shrink=0.8)
    return fig


def bucket_chart(labels: Sequence[str], sentences: Sequence[int], scores: dict[str, Sequence[float]],
                 title: str = "scores by source length") -> Figure:
    """Grouped bars: one group per length bucket (labelled with its sentence count), one bar per metric."""
    fig = Figure(figsize=(2.5 + 1.1 * len(labels), 4.5), layout="constrained")
    ax: Axes = fig.subplots()
    width = 0.8 / max(len(scores), 1)
    for m, (metric, values) in enumerate(scores.items()):
        bars = ax.bar([i + (m - (len(scores) - 1) / 2) * width for i in range(len(labels))], values, width,
                      label=metric)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(labels)), labels=[f"{label}\n({n} sent.)" for label, n in zip(labels, sentences)])
    ax.set(title=title, xlabel="source length (words)", ylabel="score")
    ax.set_ylim(0, max([1.0, *(v for values in scores.values() for v in values)]) * 1.15)
    ax.legend()
    return fig


def save(fig: Figure, path: Path | str, dpi: int = 110) -> Path:
    """Write the figure as PNG (rendered with Agg), atomically, creating the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_binary(path) as f:
        fig.savefig(f, dpi=dpi, format="png")
    return path
