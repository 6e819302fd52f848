"""CPU data-parallel scaling: training throughput (target tokens/s) of 1 process vs 2 DDP processes.

    python -m benchmarks.ddp_scaling [--steps 30] [--warmup 5] [--setups 1x1,1x2,2x1] [train overrides ...]

A setup PxT is P processes (P > 1: DDP over gloo, trainer=ddp_cpu) with T threads each; every setup
trains the same model from scratch for warmup + steps optimizer steps in a fresh process and is
timed over the last `steps`. Each DDP rank trains on its own token-budget batches, so a step of 2
processes processes about twice the tokens of a 1-process step. Overrides are `scripts/train.py`
ones, e.g. model.hidden_size=128 data.train_limit=5000; run from the repository root.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--setups", default="1x1,1x2,2x1", help="processes x threads, comma-separated")
    p.add_argument("--worker", nargs=3, metavar=("PROCESSES", "THREADS", "RUN_DIR"), help=argparse.SUPPRESS)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    if args.worker:
        processes, threads, run_dir = args.worker
        worker(int(processes), int(threads), Path(run_dir), args.warmup, args.steps, args.overrides)
        return
    with tempfile.TemporaryDirectory() as run_dir:  # the setups share one tokenizer
        rows = [measure(s, run_dir, args) for s in args.setups.split(",")]
    base = rows[0]["tokens_per_s"]
    print(f"{'processes x threads':<22}{'target tokens/s':>16}{'vs ' + args.setups.split(',')[0]:>10}")
    for r in rows:
        print(f"{r['processes']} x {r['threads']:<18}{r['tokens_per_s']:>16.0f}{r['tokens_per_s'] / base:>10.2f}")


def measure(setup: str, run_dir: str, args: argparse.Namespace) -> dict:
    """Run one setup in a fresh process (threads fixed before torch starts); its JSON result."""
    processes, threads = setup.split("x")
    cmd = [sys.executable, "-m", "benchmarks.ddp_scaling", "--worker", processes, threads, run_dir,
           "--steps", str(args.steps), "--warmup", str(args.warmup), *args.overrides]
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: setup {setup} failed:\n{out.stderr[-3000:]}")
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("{")))


def worker(processes: int, threads: int, run_dir: Path, warmup: int, steps: int, overrides: list[str]) -> None:
    """Train for warmup + steps steps; rank 0 prints {"processes", "threads", "tokens", "seconds", "tokens_per_s"}."""
    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import open_dict

    import seq2seq.config  # noqa: F401  (registers the typed configs with Hydra)
    from benchmarks.meter import TokenMeter
    from seq2seq.training.train import make_trainer, new_module, shared_tokenizer

    torch.set_num_threads(threads)
    trainer_cfg = ["trainer=cpu"] if processes == 1 else ["trainer=ddp_cpu", f"trainer.devices={processes}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", [*trainer_cfg, f"paths.run_dir={run_dir}", f"++trainer.max_steps={warmup + steps}",
                                "trainer.max_epochs=-1", "trainer.max_time=null", "++trainer.limit_val_batches=0",
                                "++trainer.enable_checkpointing=false", "trainer.enable_progress_bar=false",
                                "trainer.enable_model_summary=false", *overrides])
    with open_dict(cfg):
        cfg.callbacks, cfg.logger = {}, {}  # no checkpoints, logs or monitors in the timing
    L.seed_everything(cfg.seed)
    meter = TokenMeter(warmup)
    trainer = make_trainer(cfg, [meter])
    datamodule = instantiate(cfg.data)
    module = new_module(cfg, shared_tokenizer(datamodule, run_dir / "tokenizer", trainer.global_rank))
    trainer.fit(module, datamodule)
    if trainer.is_global_zero:
        print(json.dumps({"processes": processes, "threads": threads, "tokens": meter.tgt_tokens,
                          "seconds": meter.seconds, "tokens_per_s": meter.tgt_tokens / meter.seconds}), flush=True)


if __name__ == "__main__":
    main()
