"""Is a new training path numerically faithful? The default run (`python scripts/train.py`) trained for
--epochs epochs by several (code tree, precision) variants side by side, one thread each, same seed
and batches; then each epoch's validation loss (teacher-forced NLL per target piece) and greedy val
BLEU, and every variant's difference to the first, read from each run's logs/metrics.csv.

    git worktree add /tmp/old 2764698
    python -m benchmarks.faithfulness /tmp/old:32-true .:32-true .:bf16-mixed [--epochs 10] [--out DIR]

Variants run at once, so their speed is not a figure here (benchmarks.speed and benchmarks.alternate
measure it); only their loss and BLEU are. The tolerance printed beside the largest differences is the
one the CPU-speed issue holds a new path to: 0.01 validation loss and 0.4 BLEU at every epoch's end.
"""
import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

LOSS_TOLERANCE, BLEU_TOLERANCE = 0.01, 0.4


def launch(tree: Path, precision: str, run_dir: Path, epochs: int, overrides: list[str]) -> subprocess.Popen:
    """scripts/train.py of `tree` in `precision`, without early stopping or a time limit, one thread."""
    data = tree.resolve().parent / "shared/data/multi30k"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree.resolve()),
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    command = [sys.executable, "scripts/train.py", f"hydra.run.dir={run_dir}", f"data.source.path={data}",
               f"trainer.precision={precision}", f"trainer.max_epochs={epochs}", "trainer.max_time=null",
               "callbacks.early_stopping=null", "trainer.enable_progress_bar=false", *overrides]
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "faithfulness.log", "w") as log:  # the child keeps its own copy of the file
        return subprocess.Popen(command, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)


def validations(run_dir: Path) -> dict[int, tuple[float, float]]:
    """epoch -> (val/loss, val/bleu) from the run's logs/metrics.csv."""
    rows = {}
    with open(run_dir / "logs/metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("val/loss") and row.get("val/bleu"):
                rows[int(row["epoch"])] = (float(row["val/loss"]), float(row["val/bleu"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="TREE:PRECISION, the first the reference")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("runs/faithfulness"))
    parser.add_argument("--overrides", nargs="*", default=[], help="more train.py overrides, for every variant")
    args = parser.parse_args()
    variants = [(Path(tree), precision) for tree, precision in (v.rsplit(":", 1) for v in args.variants)]
    dirs = [args.out.resolve() / f"{i}-{tree.resolve().name}-{precision}" for i, (tree, precision) in enumerate(variants)]
    running = [launch(tree, precision, d, args.epochs, args.overrides) for (tree, precision), d in zip(variants, dirs)]
    for (tree, precision), d, process in zip(variants, dirs, running):
        if process.wait() != 0:
            sys.exit(f"error: training with {tree} in {precision} failed: {d / 'faithfulness.log'}")
    curves = [validations(d) for d in dirs]
    names = [f"{tree.resolve().name} {precision}" for tree, precision in variants]
    for name, d, curve in zip(names, dirs, curves):
        if sorted(curve) != list(range(args.epochs)):
            sys.exit(f"error: {d / 'logs/metrics.csv'} ({name}) validates epochs {sorted(curve)}, not 0..{args.epochs - 1}")
    print(f"{'epoch':>5s} " + " ".join(f"{n + ' loss':>22s} {'BLEU':>6s}" for n in names))
    worst = [(0.0, 0.0) for _ in variants]
    for epoch in sorted(curves[0]):
        cells = []
        for i, curve in enumerate(curves):
            loss, bleu = curve[epoch]
            cells.append(f"{loss:22.4f} {bleu:6.2f}")
            ref_loss, ref_bleu = curves[0][epoch]
            worst[i] = (max(worst[i][0], abs(loss - ref_loss)), max(worst[i][1], abs(bleu - ref_bleu)))
        print(f"{epoch + 1:5d} " + " ".join(cells))
    for name, (loss, bleu) in zip(names[1:], worst[1:]):
        within = loss <= LOSS_TOLERANCE and bleu <= BLEU_TOLERANCE
        print(f"{name} against {names[0]}: largest |d val loss| {loss:.4f} (tolerance {LOSS_TOLERANCE}), "
              f"|d val BLEU| {bleu:.2f} (tolerance {BLEU_TOLERANCE}): {'within' if within else 'OUTSIDE'}")


if __name__ == "__main__":
    main()
