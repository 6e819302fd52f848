"""Scale benchmark: the data path from Multi30k's 29 thousand to WMT14's 4.5 million sentence pairs.

    python -m benchmarks.corpus_scale [--pairs 29000 450000 4500000] [--work DIR] [--steps 80] [--threads 1] [overrides ...]

For each size N it builds a synthetic corpus in `--work` (default: a temporary folder): N training
pairs, each line two random Multi30k training captions joined (the English and German lines stay
aligned), val/test = Multi30k's; plus Multi30k itself as the reference row. Then, interleaved over
the corpora in one run, each measure a fresh `scripts/train.py` process:
  first   `trainer.max_steps=1 data.eval_limit=50` with an empty data.cache_dir: wall time to the end
          (model file written, 50 test sentences decoded), peak RSS (/usr/bin/time -v), and the
          tokenization rate the run logs for the training split (with data.subword_sampling.enabled=true:
          of its first epoch's sampled segmentation)
  cached  the same command again, the cache now filled
  steady  `trainer.max_steps=--steps` on the cache: training target tokens/s, the mean of the
          ThroughputMonitor's readings (20-step windows) after the first 20 steps
Every run validates once, at its last step, on one batch (`trainer.val_check_interval=<steps>
trainer.limit_val_batches=1`): a run stopped by max_steps before its first validation ends without
a model file (EarlyStopping's error, then no best checkpoint). Results: a
Markdown table on stdout and scale.json in --work.
"""
import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
EVAL = ("val", "test_2016_flickr")


def build_corpus(folder: Path, pairs: int, seed: int = 0) -> Path:
    """`pairs` lines of two random Multi30k training captions joined, in train.en / train.de."""
    if (folder / "train.de").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    from seq2seq.data.sources import read_lines

    rows = np.random.default_rng(seed).integers(0, 29_000, (pairs, 2))
    for lang in ("en", "de"):
        lines = read_lines(MULTI30K / f"train.{lang}.gz")
        with open(folder / f"train.{lang}.tmp", "w", encoding="utf-8") as f:
            for start in range(0, pairs, 100_000):
                f.write("".join(f"{lines[a]} {lines[b]}\n" for a, b in rows[start : start + 100_000]))
        os.replace(folder / f"train.{lang}.tmp", folder / f"train.{lang}")
        for split in EVAL:
            shutil.copy(MULTI30K / f"{split}.{lang}.gz", folder / f"{split}.{lang}.gz")
    return folder


def train(corpus: Path, cache: Path, run_dir: Path, overrides: list[str], threads: int) -> dict:
    """One scripts/train.py process under /usr/bin/time -v: seconds, peak RSS (MiB), its output."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "scripts/train.py", f"data.source.path={corpus}",
           "data.fallback=null", f"data.cache_dir={cache}", f"hydra.run.dir={run_dir}", "trainer.enable_progress_bar=false",
           "data.eval_limit=50", "trainer.limit_val_batches=1", *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out)
    encoded = re.findall(r"encoded (\d+) sentences in [\d.]+ s \((\d+) sentences/s\)", out)
    train_rate = max(encoded, key=lambda e: int(e[0]))[1] if encoded else None  # the largest split: train
    return {"seconds": seconds, "rss_mib": int(rss.group(1)) / 1024 if rss else None, "rc": proc.returncode,
            "model_file": (run_dir / "model.pt").is_file(), "sentences_per_s": train_rate and float(train_rate),
            "tail": out[-3000:] if proc.returncode else ""}


def steady_tokens_per_s(run_dir: Path, after: int = 20) -> float | None:
    """Mean target tokens/s of the ThroughputMonitor's readings after step `after`."""
    with open(run_dir / "logs" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    key = next((k for k in rows[0] if k.endswith("items_per_sec")), None) if rows else None
    values = [float(r[key]) for r in rows if key and r[key] and int(r["step"]) >= after]
    return sum(values) / len(values) if values else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, nargs="+", default=[29_000, 450_000, 4_500_000])
    p.add_argument("--work", type=Path, help="corpora, caches and runs (default: a temporary folder, removed)")
    p.add_argument("--steps", type=int, default=80, help="optimizer steps of the steady-state run")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the runs (torch's threads; 1 keeps "
                   "a shared machine from spin-waiting)")
    p.add_argument("overrides", nargs="*", help="scripts/train.py overrides for every run")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="scale-"))
    corpora = {"multi30k": MULTI30K}
    for n in args.pairs:
        corpora[f"{n:,}"] = build_corpus(work / f"corpus-{n}", n)
    results: dict[str, dict] = {name: {} for name in corpora}
    one_step = ["trainer.max_steps=1", "trainer.val_check_interval=1", *args.overrides]
    steady = [f"trainer.max_steps={args.steps}", f"trainer.val_check_interval={args.steps}",
              "trainer.log_every_n_steps=10", "+callbacks.throughput.window_size=20", *args.overrides]
    for measure, overrides in (("first", one_step), ("cached", one_step), ("steady", steady)):
        for name, corpus in corpora.items():
            run_dir = work / "runs" / f"{name.replace(',', '')}-{measure}"
            shutil.rmtree(run_dir, ignore_errors=True)
            r = train(corpus, work / "cache" / name.replace(",", ""), run_dir, overrides, args.threads)
            if measure == "steady" and r["rc"] == 0:
                r["tokens_per_s"] = steady_tokens_per_s(run_dir)
            results[name][measure] = r
            (work / "scale.json").write_text(json.dumps(results, indent=1))  # so far
            print(f"{measure:>6} {name:>10}: {r['seconds']:.1f} s, rc {r['rc']}", r["tail"], file=sys.stderr, flush=True)
    print(table(results, corpora))
    if not args.work:
        shutil.rmtree(work)


def table(results: dict, corpora: dict[str, Path]) -> str:
    base = results.get("29,000", {}).get("steady", {}).get("tokens_per_s")
    rows = ["| corpus | train text | first run | cached run | peak RSS first / cached | tokenization | "
            "train tgt tok/s | vs 29,000 | model file |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        first, cached, steady = r["first"], r["cached"], r["steady"]
        size = sum(f.stat().st_size for f in corpora[name].glob("train.*")) / 2**20
        tok = steady.get("tokens_per_s")
        rate = f"{first['sentences_per_s']:,.0f} sent/s" if first["sentences_per_s"] else "-"
        rows.append(f"| {name} | {size:,.0f} MiB | {first['seconds']:.0f} s | {cached['seconds']:.0f} s | "
                    f"{first['rss_mib'] or 0:,.0f} / {cached['rss_mib'] or 0:,.0f} MiB | {rate} | "
                    f"{tok or 0:,.0f} | {tok / base if tok and base else 0:.2f} | "
                    f"{'yes' if first['model_file'] and cached['model_file'] else 'no'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
