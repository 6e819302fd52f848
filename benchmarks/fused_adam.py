"""CPU recipe speed-ups side by side in one run, on the recipe's model and batches
(experiment=multi30k_cpu), torch.optim.Adam's foreach implementation (optim.fused=false, the default)
against its fused CPU kernel (optim.fused=true), in each precision:
  - fused and foreach Adam take the same steps (largest parameter difference after 20 fp32 steps);
  - Adam's step alone, ms (the fastest of 5 interleaved rounds);
  - the median training step of two identical models stepping in turn on the same batches, one per
    optimizer (load on the machine falls on both alike);
  - `rounds` Lightning runs of every variant, interleaved: target tokens per second and per CPU-second.

    python -m benchmarks.fused_adam [--steps 60] [--warmup 10] [--rounds 2] [--threads N]
"""
import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import seq2seq.config  # noqa: F401  (registers the typed configs with Hydra)
from benchmarks.meter import TokenMeter, machine
from benchmarks.speed import forward_backward
from seq2seq.config import cpu_precision
from seq2seq.training.lightning_module import TranslationModule

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("32-true", "bf16-mixed")


class CpuStopwatch(TokenMeter):
    """Stopwatch that also takes the process's CPU time over the timed steps: with one thread, target
    tokens per CPU-second is a measure that other load on the machine disturbs far less than wall time."""

    def __init__(self, warmup: int) -> None:
        super().__init__(warmup)
        self.cpu_start, self.cpu_seconds = None, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        super().on_train_batch_start(trainer, module, batch, batch_idx)
        if self.start is not None and self.cpu_start is None:
            self.cpu_start = time.process_time()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, module, outputs, batch, batch_idx)
        if self.cpu_start is not None:
            self.cpu_seconds = time.process_time() - self.cpu_start


def new_module(cfg, tokenizer, fused: bool = False) -> TranslationModule:
    L.seed_everything(cfg.seed, verbose=False)
    return TranslationModule(model=OmegaConf.to_container(cfg.model, resolve=True), tokenizer=tokenizer.state(),
                             optim={"lr": cfg.optim.lr, "schedule": "constant", "fused": fused},
                             label_smoothing=cfg.label_smoothing)


def throughput(cfg, datamodule, tokenizer, precision: str, fused: bool, warmup: int, steps: int) -> dict:
    """Training target tokens per second and per CPU-second over `steps` optimizer steps after `warmup`,
    validation excluded."""
    module = new_module(cfg, tokenizer, fused)
    watch = CpuStopwatch(warmup)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=precision, max_steps=warmup + steps,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, gradient_clip_val=cfg.trainer.gradient_clip_val,
                        use_distributed_sampler=False, callbacks=[watch])
    trainer.fit(module, datamodule)
    return {"tok_s": watch.tgt_tokens / watch.seconds, "tok_cpu_s": watch.tgt_tokens / watch.cpu_seconds}


def train_step(module: TranslationModule, optimizer: torch.optim.Optimizer, batch: dict, precision: str,
               clip: float) -> None:
    """Forward and backward as Lightning runs them (benchmarks/speed.py), clipping, Adam."""
    forward_backward(module, batch, precision)
    torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    optimizer.step()
    optimizer.zero_grad()


def same_steps(cfg, datamodule, tokenizer, n: int = 20) -> float:
    """Largest parameter difference after `n` fp32 Adam steps (clipped) on the same batches and dropout
    masks, foreach vs fused."""
    batches = [b for _, b in zip(range(n), datamodule.train_dataloader())]
    params = []
    for fused in (False, True):
        module = new_module(cfg, tokenizer)
        module.train()
        optimizer = torch.optim.Adam(module.parameters(), lr=cfg.optim.lr, fused=fused)
        for i, batch in enumerate(batches):
            torch.manual_seed(i)
            train_step(module, optimizer, batch, "32-true", cfg.trainer.gradient_clip_val)
        params.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    return float((params[0] - params[1]).abs().max())


def alternating_steps(cfg, datamodule, tokenizer, precision: str, n: int) -> dict[str, float]:
    """Median ms per training step (forward, backward, clipping, Adam) of two identical models, one with
    foreach Adam and one with fused, stepping in turn on the same batches: load on the machine that
    changes from one minute to the next falls on both alike."""
    runs = {}
    for name in ("foreach", "fused"):
        module = new_module(cfg, tokenizer)
        module.train()
        runs[name] = (module, torch.optim.Adam(module.parameters(), lr=cfg.optim.lr, fused=name == "fused"), [])
    for i, batch in enumerate(b for _, b in zip(range(n + 2), datamodule.train_dataloader())):
        for module, optimizer, times in runs.values():
            start = time.perf_counter()
            train_step(module, optimizer, batch, precision, cfg.trainer.gradient_clip_val)
            if i >= 2:  # the first two steps allocate
                times.append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(times) for name, (_, _, times) in runs.items()}


def adam_step_ms(cfg, tokenizer, rounds: int = 5, n: int = 20) -> dict[str, float]:
    """Milliseconds per Adam step alone on the recipe's parameters (random gradients), foreach vs fused,
    interleaved `rounds` times; the fastest round of each (the least disturbed by other load)."""
    module = new_module(cfg, tokenizer)
    for p in module.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizers = {name: torch.optim.Adam(module.parameters(), lr=1e-6, fused=name == "fused")
                  for name in ("foreach", "fused")}
    best = {name: math.inf for name in optimizers}
    for _ in range(rounds):
        for name, optimizer in optimizers.items():
            optimizer.step()  # warm-up (state allocated on the first step)
            start = time.perf_counter()
            for _ in range(n):
                optimizer.step()
            best[name] = min(best[name], 1000 * (time.perf_counter() - start) / n)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2, help="Lightning runs of every variant (0: none)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", default="fused_adam.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=multi30k_cpu",
                                                      f"data.source.path={ROOT.parent / 'shared/data/multi30k'}"])
    datamodule = instantiate(cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = datamodule.prepare_tokenizer(Path(tmp) / "tokenizer")
    datamodule.setup("fit")
    results = {"machine": machine(), "cpu_precision": cpu_precision(),
               "avx512_bf16": torch.cpu._is_avx512_bf16_supported(), "amx": torch.cpu._is_amx_tile_supported(),
               "max_abs_param_diff_fused_vs_foreach": same_steps(cfg, datamodule, tokenizer), "rounds": []}
    print(f"machine: {results['machine']}; avx512_bf16 {results['avx512_bf16']}, amx {results['amx']}: "
          f"${{cpu_precision:}} = {results['cpu_precision']}", flush=True)
    print(f"fused vs foreach Adam, 20 fp32 steps: max |param diff| {results['max_abs_param_diff_fused_vs_foreach']:.2e}",
          flush=True)
    results["adam_step_ms"] = adam_step_ms(cfg, tokenizer)
    print("Adam step alone, ms: " + ", ".join(f"{k} {v:.1f}" for k, v in results["adam_step_ms"].items())
          + f" ({sum(p.numel() for p in new_module(cfg, tokenizer).parameters()) / 1e6:.1f} M params)",
          flush=True)
    results["alternating_step_ms"] = {}
    for p in PRECISIONS:
        ms = results["alternating_step_ms"][p] = alternating_steps(cfg, datamodule, tokenizer, p, args.steps)
        print(f"{p}: median training step, foreach and fused Adam in turn: foreach {ms['foreach']:.0f} ms, "
              f"fused {ms['fused']:.0f} ms ({ms['foreach'] / ms['fused']:.3f}x)", flush=True)
    for i in range(args.rounds):
        results["rounds"].append({})
        for p in PRECISIONS:
            for f in (False, True):
                name = f"{p} {'fused' if f else 'foreach'}"
                r = results["rounds"][-1][name] = throughput(cfg, datamodule, tokenizer, p, f, args.warmup, args.steps)
                print(f"round {i + 1}: {name}: {r['tok_s']:.0f} target tokens/s, {r['tok_cpu_s']:.0f} per CPU-second",
                      flush=True)
    if not results["rounds"]:
        Path(args.output).write_text(json.dumps(results, indent=1))
        return
    names = list(results["rounds"][0])
    for key, what in (("tok_s", "target tokens/s"), ("tok_cpu_s", "target tokens/CPU-s")):
        print(f"\n{what:28s}" + "".join(f"{'round ' + str(i + 1):>10s}" for i in range(args.rounds))
              + f"   vs {names[0]}, each round")
        for name in names:
            values = [r[name][key] for r in results["rounds"]]
            ratios = [r[name][key] / r[names[0]][key] for r in results["rounds"]]
            print(f"{name:28s}" + "".join(f"{v:10.0f}" for v in values) + "   "
                  + ", ".join(f"{x:.2f}x" for x in ratios))
    Path(args.output).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
