"""What the benchmarks share: the meter of training throughput (tokens and wall time of the steps after a
warm-up), and how a benchmark hands over its results (a table on stdout, JSON in a file)."""
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch

from seq2seq.data.tokenizer import PAD


class TokenMeter(L.Callback):
    """Counts target and source tokens of the training steps from global step `warmup` on, and their
    wall time. Under DDP the counts are summed over ranks when training ends (each rank its own batches)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.first = warmup, None, None
        self.seconds, self.tgt_tokens, self.src_tokens = 0.0, 0, 0
        self.warmup_seconds = 0.0  # the warm-up steps' wall time, reported beside the rate they are kept out of

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: dict, i: int) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()
            self.warmup_seconds = self.start - self.first

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, out, batch: dict, i: int) -> None:
        if self.start is not None:
            self.tgt_tokens += int((batch["tgt_out"] != PAD).sum())
            self.src_tokens += int(batch["src_lens"].sum())
            self.seconds = time.perf_counter() - self.start

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.world_size > 1:
            counts = trainer.strategy.reduce(torch.tensor([self.tgt_tokens, self.src_tokens], dtype=torch.float64),
                                             reduce_op="sum")
            self.tgt_tokens, self.src_tokens = (int(x) for x in counts.tolist())

    @property
    def tgt_tok_s(self) -> float:
        return self.tgt_tokens / self.seconds

    @property
    def src_tgt_tok_s(self) -> float:
        return (self.tgt_tokens + self.src_tokens) / self.seconds


def publish(results: dict, table: Callable[[dict], str], output: str) -> None:
    """Print the results as `table` renders them; write them as JSON to `output`."""
    print(table(results))
    Path(output).write_text(json.dumps(results, indent=1))
    print(f"JSON: {output}", file=sys.stderr)


def machine() -> str:
    """What every figure is measured on: the CPU model and the features its numerics use (AVX-512 BF16,
    AMX tiles, AVX-512 VNNI, as torch sees them), cores, torch's threads, torch's version."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    features = {"avx512_bf16": torch.cpu._is_avx512_bf16_supported(), "amx": torch.cpu._is_amx_tile_supported(),
                "avx512_vnni": torch.cpu._is_vnni_supported()}
    flags = " ".join(name if present else f"no {name}" for name, present in features.items())
    return f"{cpu} ({flags}), {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"


def peak_rss_mib() -> float:
    """This process's own peak resident memory, MiB: the kernel's high-water mark of its address space
    (VmHWM). Not getrusage's ru_maxrss: a process started by fork/vfork + exec inherits its parent's peak
    there, so a fresh process spawned by a large one would report the parent's memory."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")
