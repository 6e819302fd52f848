"""Our Lightning extensions: the atomic checkpoint writer, the training-curves callback, the checkpoint saved on
Ctrl+C or SIGTERM, and a CSV logger that keeps a resumed run's history."""
import csv
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

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
