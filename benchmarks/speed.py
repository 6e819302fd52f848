"""Throughput and model-FLOP utilisation on Multi30k, ours and (optionally) Joey NMT's, in one run.

    python benchmarks/speed.py [peer=joey] [model_file=runs/.../model.pt] [steps=60]   (conf/benchmarks/speed.yaml)

Every figure is measured here, on these cores, in this process (or its Joey subprocesses):
  training    target and source+target tokens/s over `steps` optimizer steps after `warmup` steps,
              validation excluded, for each precision; peak resident memory
  translation sentences/s and output tokens/s on the test split, greedy and beam search, batched
  MFU         model matmul FLOPs per target token (counted with torch's FlopCounterMode on real
              batches) x tokens/s / torch.matmul FLOP/s measured in the same precision
  profile     torch.profiler over 8 training steps per precision: the ops with most self CPU time
"""
import re
import resource
import subprocess
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.flop_counter import FlopCounterMode

import seq2seq.config  # noqa: F401  (registers the typed configs with Hydra)
from benchmarks.meter import TokenMeter, machine, peak_rss_mib, publish
from seq2seq.inference.translator import Translator
from seq2seq.training.lightning_module import TranslationModule
from seq2seq.training.loss import batch_loss

AUTOCAST = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def matmul_flops(dtype: torch.dtype, n: int = 2048, repeat: int = 10) -> float:
    """FLOP/s of one n x n torch.matmul in `dtype` on this machine."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeat):
        a @ b
    return 2 * n**3 * repeat / (time.perf_counter() - start)


def forward_backward(module: TranslationModule, batch: dict, precision: str) -> int:
    """One training batch's forward and backward pass (as Lightning runs it); returns its target tokens."""
    dtype = AUTOCAST[precision]
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        loss, _, n = batch_loss(module.model, batch, 0.1)
    (loss / n).backward()
    return n


def flops_per_target_token(module: TranslationModule, batches: list[dict], precision: str) -> float:
    """Forward + backward matmul FLOPs of real training batches, per target token."""
    counter, tokens = FlopCounterMode(display=False), 0
    with counter:
        for batch in batches:
            tokens += forward_backward(module, batch, precision)
    module.zero_grad()
    return counter.get_total_flops() / tokens


def profile_shares(module: TranslationModule, batches: list[dict], precision: str, top: int = 10) -> dict[str, float]:
    """torch.profiler over training steps (forward, backward, Adam) on real batches: the `top` ops'
    shares of self CPU time, costliest first."""
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)

    def step(batch: dict) -> None:
        forward_backward(module, batch, precision)
        optimizer.step()
        optimizer.zero_grad()

    step(batches[0])  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for batch in batches:
            step(batch)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    return {e.key: e.self_cpu_time_total / total for e in events[:top]}


def train_throughput(cfg: DictConfig, datamodule, tokenizer, precision: str) -> dict:
    L.seed_everything(cfg.seed)
    module = TranslationModule(model=OmegaConf.to_container(cfg.model, resolve=True), tokenizer=tokenizer.state(),
                               optim={"lr": 1e-3, "schedule": "constant"}, label_smoothing=0.1)
    meter = TokenMeter(cfg.warmup_steps)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=precision, max_steps=cfg.warmup_steps + cfg.steps,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, gradient_clip_val=1.0, use_distributed_sampler=False,
                        callbacks=[meter])
    trainer.fit(module, datamodule)
    sample = [b for _, b in zip(range(8), datamodule.train_dataloader())]
    flops = flops_per_target_token(module, sample, precision)
    return {"precision": precision, "tgt_tok_s": meter.tgt_tok_s, "src_tgt_tok_s": meter.src_tgt_tok_s,
            "flops_per_tgt_token": flops, "steps": cfg.steps, "seconds": meter.seconds,
            "warmup_steps": cfg.warmup_steps, "warmup_seconds": meter.warmup_seconds,
            "profile": profile_shares(module, sample, precision) if cfg.profile else None}


def translate_throughput(model_file: str, sources: list[str], beam: int, **options) -> dict:
    translator = Translator.load(model_file, beam_size=beam, **options)
    translator.translate(sources[:64])  # warm-up
    start = time.perf_counter()
    hyps = translator.translate(sources)
    seconds = time.perf_counter() - start
    pieces = sum(len(ids) for ids in translator.tokenizer.encode_tgt(hyps))
    return {"beam": beam, "sents_s": len(sources) / seconds, "tok_s": pieces / seconds, "seconds": seconds,
            "words_per_sent": words_per_line(hyps)}


def words_per_line(lines: list[str]) -> float:
    """Mean whitespace-separated words per output line (output lengths differ between models)."""
    return sum(len(line.split()) for line in lines) / max(len(lines), 1)


def joey_train_throughput(joey: DictConfig, steps: int) -> dict:
    """Runs Joey NMT training for `steps` updates and reads its own 'Tokens per Sec' log lines."""
    cfg = Path(joey.work) / "gru.yaml"
    text = cfg.read_text()
    text = re.sub(r'model_dir: ".*"', f'model_dir: "{joey.work}/bench_model"', text)
    text = text.replace("validation_freq: 500", f"validation_freq: {steps + 1000}")
    text = text.replace("    epochs: 8", f"    epochs: 8\n    updates: {steps}")
    bench = Path(joey.work) / "gru_bench.yaml"
    bench.write_text(text)
    # Its `train` ends by testing the best checkpoint, which a run without validation lacks, so its
    # exit status is not the measure of success: the log lines and the saved final checkpoint are.
    log = subprocess.run([f"{joey.venv}/bin/python", "-m", "joeynmt", "train", str(bench)],
                         capture_output=True, text=True).stderr
    rates = [float(x) for x in re.findall(r"Tokens per Sec:\s+([\d.]+)", log)]
    if not rates or f"{steps}.ckpt" not in log:
        raise RuntimeError(f"Joey NMT training did not finish {steps} updates:\n{log[-3000:]}")
    rates = rates[1:] or rates  # the first interval includes start-up
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"precision": "32-true", "tgt_tok_s": sum(rates) / len(rates), "peak_rss_mib": peak}


def joey_translate_throughput(joey: DictConfig, sources: list[str], beam: int) -> dict:
    """Joey NMT's `translate` on the sources, minus the same command's time on one line (start-up)."""
    cfg = Path(joey.work) / "gru.yaml"
    text = cfg.read_text()
    text = re.sub(r'model_dir: ".*"', f'model_dir: "{joey.model_dir}"', text)
    text = re.sub(r"beam_size: \d+", f"beam_size: {beam}", text)
    bench = Path(joey.work) / f"gru_translate_beam{beam}.yaml"
    bench.write_text(text)

    def timed(lines: list[str]) -> tuple[float, str]:
        start = time.perf_counter()
        out = subprocess.run([f"{joey.venv}/bin/python", "-m", "joeynmt", "translate", str(bench)],
                             input="\n".join(lines) + "\n", capture_output=True, text=True, check=True).stdout
        return time.perf_counter() - start, out

    startup, _ = timed(sources[:1])
    total, out = timed(sources)
    seconds = total - startup
    hyps = out.splitlines()
    if len(hyps) != len(sources):
        raise RuntimeError(f"Joey NMT gave {len(hyps)} lines for {len(sources)}")
    return {"beam": beam, "sents_s": (len(sources) - 1) / seconds, "seconds": seconds,
            "words_per_sent": words_per_line(hyps), "hyps": hyps}


def run(cfg: DictConfig) -> dict:
    torch.manual_seed(cfg.seed)
    results: dict = {"machine": machine(), "matmul_gflops": {}}
    for precision in cfg.precisions:
        dtype = AUTOCAST[precision] or torch.float32
        results["matmul_gflops"][precision] = matmul_flops(dtype) / 1e9
    datamodule = instantiate(cfg.data)
    tokenizer = datamodule.prepare_tokenizer(Path(cfg.work_dir) / "tokenizer")
    datamodule.setup("fit")
    results["ours_train"], results["joey_train"] = [], None
    for precision in cfg.precisions:
        r = train_throughput(cfg, datamodule, tokenizer, precision)
        r["mfu"] = r["flops_per_tgt_token"] * r["tgt_tok_s"] / (results["matmul_gflops"][precision] * 1e9)
        results["ours_train"].append(r)
        if cfg.peer == "joey" and results["joey_train"] is None:  # interleaved: Joey right after our first
            results["joey_train"] = joey_train_throughput(cfg.joey, cfg.joey.steps)
    results["ours_peak_rss_mib"] = peak_rss_mib()
    if cfg.model_file:
        sources = list(datamodule.load("test")["src"])
        results["ours_translate"], results["joey_translate"] = [], []
        for beam in cfg.beams:
            results["ours_translate"].append(translate_throughput(cfg.model_file, sources, beam))
            if cfg.peer == "joey" and cfg.joey.model_dir:
                results["joey_translate"].append(joey_translate_throughput(cfg.joey, sources, beam))
    return results


def table(results: dict) -> str:
    """The results as a plain-text table, with ours/Joey ratios where Joey was measured."""
    lines = [f"machine: {results['machine']}",
             "matmul GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in results["matmul_gflops"].items()), "",
             f"{'measure':36s} {'ours':>10s} {'joey':>10s} {'ratio':>8s}"]

    def row(name: str, ours: float, joey: float | None = None, digits: int = 0) -> None:
        ratio = f"{ours / joey:7.2f}x" if joey else ""
        joey_text = f"{joey:.{digits}f}" if joey else "-"
        lines.append(f"{name:36s} {ours:10.{digits}f} {joey_text:>10s} {ratio:>8s}")

    joey = results.get("joey_train") or {}
    for r in results["ours_train"]:
        row(f"train tgt tok/s ({r['precision']})", r["tgt_tok_s"], joey.get("tgt_tok_s"))
        row(f"train src+tgt tok/s ({r['precision']})", r["src_tgt_tok_s"])
        row(f"MFU % ({r['precision']})", 100 * r["mfu"], digits=1)
        row(f"warm-up s, {r['warmup_steps']} steps ({r['precision']})", r["warmup_seconds"], digits=1)
    for r in results["ours_train"]:
        if r.get("profile"):
            shares = ", ".join(f"{op.removeprefix('aten::')} {100 * v:.0f}%" for op, v in r["profile"].items())
            lines.append(f"profile ({r['precision']}), self CPU time: {shares}")
    row("peak RSS MiB", results["ours_peak_rss_mib"], joey.get("peak_rss_mib"))
    joey_translate = {r["beam"]: r for r in results.get("joey_translate") or []}
    for r in results.get("ours_translate") or []:
        peer = joey_translate.get(r["beam"], {})
        row(f"translate sents/s (beam {r['beam']})", r["sents_s"], peer.get("sents_s"), 1)
        row(f"translate tok/s (beam {r['beam']})", r["tok_s"])
        row(f"output words/sent (beam {r['beam']})", r["words_per_sent"], peer.get("words_per_sent"), 1)
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmarks/speed")
def main(cfg: DictConfig) -> None:
    publish(run(cfg), table, cfg.output)


if __name__ == "__main__":
    main()
