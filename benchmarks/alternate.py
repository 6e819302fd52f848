"""Training speed of two code trees side by side: `python -m benchmarks.speed` in each tree in turn,
alternating for `rounds` rounds (the machines drift by tens of percent within minutes), then the
medians per tree and precision, and the ratios to the first tree's fp32.

    git worktree add /tmp/old 2764698
    python -m benchmarks.alternate /tmp/old . --rounds 3 [-- steps=60 precisions=[32-true,bf16-mixed]]

The first round of each tree also profiles (speed.py's profile=true: op shares over 8 training steps,
after its throughput is measured); later rounds do not. Each run's JSON stays in --out.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def run_speed(tree: Path, out: Path, profile: bool, overrides: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.speed", f"hydra.run.dir={out}",
                           f"profile={str(profile).lower()}", *overrides], cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: benchmarks.speed in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads((out / "benchmark.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs=2, type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/alternate"))
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args, overrides = parser.parse_args(argv[:cut]), argv[cut + 1:]  # after --: benchmarks.speed's overrides
    trees = [t.resolve() for t in args.trees]
    runs: dict[int, list[dict]] = {0: [], 1: []}
    for r in range(args.rounds):
        for i, tree in enumerate(trees):
            result = run_speed(tree, (args.out / f"tree{i}-round{r + 1}").resolve(), r == 0, overrides)
            runs[i].append(result)
            rates = ", ".join(f"{t['precision']} {t['tgt_tok_s']:.0f}" for t in result["ours_train"])
            print(f"round {r + 1}, {tree}: target tok/s {rates}", flush=True)
    print(f"\nmachine: {runs[1][0]['machine']}")  # the later tree's benchmark names the CPU's features
    reference = statistics.median(t["tgt_tok_s"] for run in runs[0] for t in run["ours_train"]
                                  if t["precision"] == "32-true")
    print(f"{'tree':40s} {'precision':11s} {'tgt tok/s, each round':>28s} {'median':>8s} {'MFU %':>6s} "
          f"{'vs tree 1 fp32':>14s}")
    for i, tree in enumerate(trees):
        for precision in [t["precision"] for t in runs[i][0]["ours_train"]]:
            rows = [t for run in runs[i] for t in run["ours_train"] if t["precision"] == precision]
            rates = [t["tgt_tok_s"] for t in rows]
            median = statistics.median(rates)
            mfu = statistics.median(100 * t["mfu"] for t in rows)
            print(f"{str(tree)[-40:]:40s} {precision:11s} {' '.join(f'{x:6.0f}' for x in rates):>28s} "
                  f"{median:8.0f} {mfu:6.1f} {median / reference:13.2f}x")
    for i, tree in enumerate(trees):
        for t in runs[i][0]["ours_train"]:
            if t.get("profile"):
                shares = ", ".join(f"{op.removeprefix('aten::')} {100 * v:.0f}%" for op, v in t["profile"].items())
                print(f"profile, {tree}, {t['precision']}: {shares}")


if __name__ == "__main__":
    main()
