"""Our Lightning extensions: the atomic checkpoint writer, the training-curves and progress-line callbacks,
the checkpoint saved on Ctrl+C or SIGTERM, and a CSV logger that keeps a resumed run's history."""
import csv
import logging
import math
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from seq2seq.atomic_files import atomic_save
from seq2seq.config import check_int
from seq2seq.data.tokenizer import PAD
from seq2seq.plots import save, training_curves

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written with seq2seq.atomic_files.atomic_save. Lightning's own save renames from the
    system temp folder, which is a plain, interruptible copy when that folder is on another file system."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options: object = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        atomic_save(checkpoint, path)


class HistoryCSVLogger(CSVLogger):
    """Lightning's CSVLogger, but with ``append=True`` (a resumed run) the rows of the metrics.csv it finds stay
    and new ones follow them; Lightning's deletes that file, so a resumed run would lose its history and its
    curves.png the steps before the resume."""

    def __init__(self, *args, append: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.append = append

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = (_AppendingWriter if self.append else ExperimentWriter)(log_dir=self.log_dir)
        return self._experiment


class _AppendingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:  # instead of deleting metrics.csv: take its columns
        if Path(self.metrics_file_path).is_file():
            with open(self.metrics_file_path, newline="", encoding="utf-8") as f:
                self.metrics_keys = sorted(next(csv.reader(f), []))


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
        check_int("callbacks.progress.every_n_steps", every_n_steps)
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


class Interrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving a resumable checkpoint at `step` in `path`."""

    def __init__(self, signum: int, step: int, path: Path) -> None:
        super().__init__(f"{signal.Signals(signum).name} at step {step}: saved {path}")
        self.signum, self.step, self.path = signum, step, path


class SaveOnSignal(L.Callback):
    """Ctrl+C (SIGINT) or SIGTERM while training: finish the current batch, save a checkpoint to `path` and raise
    Interrupted on every rank. A second signal stops at once (KeyboardInterrupt), saving nothing more. After an
    epoch's last batch the stop waits for the next batch, so the epoch's validation (and its checkpoint) is done;
    when fitting ends first, `pending` says so and the caller stops.

    The checkpoint is taken where ModelCheckpoint's step checkpoints are (after a batch's optimizer step, with
    the DataLoader's position), so resume=true continues exactly. Under DDP the ranks agree at every batch
    (one boolean all-reduce) and all stop after the same one, whichever rank got the signal. The handlers
    replace Lightning's SIGTERM handler for the time of fitting (Lightning restores the previous ones).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.signum: int | None = None
        self._rank = 0

    @property
    def pending(self) -> bool:
        return self.signum is not None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.signum, self._rank = None, trainer.global_rank
        if threading.current_thread() is threading.main_thread():  # after Lightning registered its own handlers
            for signum in self.SIGNALS:
                signal.signal(signum, self._note)

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        if self._rank == 0:
            print(f"{signal.Signals(signum).name}: stopping after this batch and saving {self.path} "
                  f"(a second one stops at once)", file=sys.stderr, flush=True)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object,
                           batch_idx: int) -> None:
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the epoch's validation comes first: a resumed run would not make up for it
        if trainer.strategy.reduce_boolean_decision(self.signum is not None, all=False):
            trainer.save_checkpoint(self.path)
            raise Interrupted(self.signum or signal.SIGTERM, trainer.global_step, self.path)
