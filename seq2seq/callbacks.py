"""Our Lightning extensions: the atomic checkpoint writer and the training-curves callback."""
import logging
from pathlib import Path

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.loggers import CSVLogger

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
