"""Validation BLEU against wall-clock minutes: a training run of ours beside Joey NMT's published curve.

    python -m benchmarks.recipe_curve RUN_DIR [--out docs/recipe_vs_joey.png]

Reads the run's TensorBoard events (logs/events.*): every val/bleu (greedy, the whole val split) with
the wall time it was logged at, in minutes since the run's logger started (before the tokenizer and the
data were prepared, so data preparation counts against us). Joey NMT's points are those recorded in
``../shared/peers/joey/README.md`` (its gru.yaml on a 2-core machine of this kind, greedy val BLEU).
Prints, at each of Joey's minutes, our last validation BLEU at or before it, and draws both curves.
"""
import argparse
from pathlib import Path

from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seq2seq.plots import save

JOEY = {14: 6.2, 25: 18.6, 37: 26.2, 48: 30.0}  # minutes -> greedy val BLEU, ../shared/peers/joey/README.md


def val_bleu_by_minute(run_dir: Path) -> list[tuple[float, float]]:
    """[(minutes since the logger started, val BLEU)] in the order logged."""
    events = sorted((run_dir / "logs").glob("events.out.tfevents.*"))
    if not events:
        raise SystemExit(f"no TensorBoard events in {run_dir / 'logs'} (was logger.tensorboard on?)")
    points, start = [], None
    for path in events:  # the test stage, and a resumed run, write further files: minutes from the first's start
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        start = acc.FirstEventTimestamp() if start is None else start
        if "val/bleu" in acc.Tags()["scalars"]:
            points += [((s.wall_time - start) / 60, s.value) for s in acc.Scalars("val/bleu")]
    return points


def at_minutes(points: list[tuple[float, float]], minutes: list[float]) -> dict[float, float | None]:
    """The last value logged at or before each minute (None before the first validation)."""
    return {m: next((b for t, b in reversed(points) if t <= m), None) for m in minutes}


def figure(points: list[tuple[float, float]], label: str) -> Figure:
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot([t for t, _ in points], [b for _, b in points], marker=".", label=label)
    ax.plot(list(JOEY), list(JOEY.values()), marker="o", label="Joey NMT 2.3.0 gru.yaml (its README)")
    ax.set(xlabel="wall-clock minutes since start", ylabel="val BLEU (greedy, sacreBLEU)",
           title="Multi30k En-De, 2-core CPU: validation BLEU by wall time")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/recipe_vs_joey.png"))
    parser.add_argument("--label", default="ours: python scripts/train.py experiment=multi30k_cpu")
    args = parser.parse_args()
    points = val_bleu_by_minute(args.run_dir)
    print(f"{'minute':>6} {'ours':>6} {'Joey':>6}")
    for minute, ours in at_minutes(points, list(JOEY)).items():
        print(f"{minute:6d} {'-' if ours is None else f'{ours:6.2f}':>6} {JOEY[minute]:6.1f}")
    print(f"ours: {len(points)} validations, the last at {points[-1][0]:.1f} min: {points[-1][1]:.2f}")
    print(f"plot: {save(figure(points, args.label), args.out)}")


if __name__ == "__main__":
    main()
