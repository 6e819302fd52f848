"""Our Lightning extensions: the atomic checkpoint writer, the training-curves and progress-line callbacks."""
import logging
import math
import time
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.loggers import CSVLogger

from seq2seq.config import ConfigError
from seq2seq.data.tokenizer import PAD
from seq2seq.files import atomic_save
from seq2seq.plots import save, training_curves

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written with seq2seq.files.atomic_save. Lightning's own save renames from the
    system temp folder, which is a plain, interruptible copy when that folder is on another file system."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options: object = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_save(checkpoint, path)


class TrainingCurves(L.Callback):
    """Draws `path` (e.g. run_dir/curves.png) from the CSV logger's metrics.csv when fitting ends.

    Also when fitting stops on an error or Ctrl+C, so a cut-short run shows how far it got.
    Only global rank 0 draws; without a CSVLogger it warns and draws nothing.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        try:
            self.draw(trainer)
        except Exception as e:  # the training error is the one to report
            log.warning("could not draw %s: %s", self.path, e)

    def draw(self, trainer: L.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
        if logger is None:
            log.warning("no CSVLogger among the loggers: %s not drawn", self.path)
            return
        logger.save()  # flush the rows still buffered
        metrics = Path(logger.experiment.metrics_file_path)
        if not metrics.is_file():
            log.warning("%s does not exist (nothing logged yet): %s not drawn", metrics, self.path)
            return
        save(training_curves(metrics, title=f"training curves: {Path(logger.save_dir).name}"), self.path)
        log.info("training curves: %s", self.path)


class ProgressLog(L.Callback):
    """One log line per validation, and one every `every_n_steps` optimizer steps, for runs without a
    terminal (nohup, SLURM, CI), as the peers' logs have:

      epoch 3 step 800 | train loss 3.214 | val loss 2.412 ppl 11.16 BLEU 27.80 chrF 53.10 | 3,412 tgt tok/s |
      elapsed 0:12:04 remaining 0:14:56

    tok/s counts the target tokens trained since the previous line; remaining is trainer.max_time's rest,
    else the step budget's at the current rate. Global rank 0 alone writes.
    """

    def __init__(self, every_n_steps: int = 500) -> None:
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ConfigError(f"callbacks.progress.every_n_steps must be an integer >= 1, got {every_n_steps!r}")
        self.every_n_steps = every_n_steps
        self._start = self._mark = self._validation_start = 0.0
        self._tokens, self._written_step = 0, -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._mark = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch: dict,
                           batch_idx: int) -> None:
        self._tokens += int((batch["tgt_out"] != PAD).sum())
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self._written_step:
            self._write(trainer, with_val=False)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_start = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._mark += time.monotonic() - self._validation_start  # tok/s counts training time only
            self._write(trainer, with_val=True)

    def _write(self, trainer: L.Trainer, with_val: bool) -> None:
        now, self._written_step = time.monotonic(), trainer.global_step
        rate = self._tokens / max(now - self._mark, 1e-9)
        self._tokens, self._mark = 0, now
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        parts = [f"epoch {trainer.current_epoch} step {trainer.global_step}"]
        if "train/loss" in metrics:
            parts.append(f"train loss {metrics['train/loss']:.3f}")
        if with_val and "val/bleu" in metrics:
            parts.append(f"val loss {metrics['val/loss']:.3f} ppl {metrics['val/ppl']:.2f} "
                         f"BLEU {metrics['val/bleu']:.2f} chrF {metrics['val/chrf']:.2f}")
        parts.append(f"{rate:,.0f} tgt tok/s")
        elapsed = now - self._start
        parts.append(f"elapsed {_clock(elapsed)} remaining {_clock(self._remaining(trainer, elapsed))}")
        log.info(" | ".join(parts))

    @staticmethod
    def _remaining(trainer: L.Trainer, elapsed: float) -> float | None:
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        by_time = timer.time_remaining() if timer is not None else None
        steps = trainer.estimated_stepping_batches
        by_steps = None
        if math.isfinite(steps) and trainer.global_step > 0:
            by_steps = elapsed / trainer.global_step * (steps - trainer.global_step)
        known = [t for t in (by_time, by_steps) if t is not None]
        return min(known) if known else None


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
