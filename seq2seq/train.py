"""One training run from a composed Hydra config: fit, test with beam search, write the model file.

Data-parallel runs (``trainer=ddp``) execute this once per process: Lightning's launcher re-runs the
script for ranks > 0 (same ``hydra.run.dir``), torchrun and SLURM start every rank themselves. Rank 0
alone trains the tokenizer and writes files; the other ranks wait for its tokenizer and read it.
"""
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from seq2seq import modelfile
from seq2seq.data import TranslationDataModule
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.model.seq2seq import check_config
from seq2seq.module import TranslationModule

log = logging.getLogger(__name__)

TOKENIZER_WAIT_S = 3600.0  # how long ranks > 0 wait for rank 0 to train the tokenizer


def train(cfg: DictConfig) -> dict:
    """Returns {"test/bleu", "test/chrf", "model_file", "val/bleu" (the best validation BLEU), ...}.

    With ``validate=<checkpoint or model file>`` it trains nothing and returns that model's
    {"val/bleu", "val/chrf", "val/loss", "val/ppl"} on the validation split, under any trainer.
    """
    check_config(**OmegaConf.to_container(cfg.model, resolve=True))  # before any work is done
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.run_dir)
    trainer = make_trainer(cfg)  # first: it knows this process's global rank
    datamodule: TranslationDataModule = instantiate(cfg.data)
    if cfg.get("validate"):
        return validate(cfg, trainer, datamodule, Path(cfg.validate))
    tokenizer = shared_tokenizer(datamodule, run_dir / "tokenizer", trainer.global_rank)
    module = new_module(cfg, tokenizer)
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.resume and not last.exists():
        raise FileNotFoundError(f"resume=true but {last} does not exist (set hydra.run.dir to the run to resume)")
    trainer.fit(module, datamodule, ckpt_path=str(last) if cfg.resume else None)

    ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = [Path(p) for p in (ckpt.best_k_models if ckpt else {})] or [last]
    best = sorted(best, key=lambda p: -float(ckpt.best_k_models[str(p)]))[: cfg.average_checkpoints] if ckpt else best
    model_file = run_dir / "model.pt"
    if trainer.is_global_zero:
        write_model_file(best, model_file)
    trainer.strategy.barrier()
    module.model.load_state_dict(modelfile.read(model_file)["state_dict"])
    results = trainer.test(module, datamodule, verbose=False)[0]
    if trainer.is_global_zero:
        (run_dir / "test.hyp").write_text("\n".join(module.hypotheses) + "\n", encoding="utf-8")
    results["model_file"] = str(model_file)
    if ckpt is not None and ckpt.monitor == "val/bleu" and ckpt.best_model_score is not None:
        results["val/bleu"] = float(ckpt.best_model_score)  # the best validation BLEU: what a sweep optimises
    return results


def make_trainer(cfg: DictConfig, extra_callbacks: Sequence[Callback] = ()) -> L.Trainer:
    """The configured Trainer with its callbacks and loggers, rooted in the run folder."""
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    loggers = [instantiate(c) for c in cfg.logger.values() if c is not None]
    return instantiate(cfg.trainer, callbacks=[*callbacks, *extra_callbacks], logger=loggers or False,
                       default_root_dir=str(cfg.paths.run_dir))


def shared_tokenizer(datamodule: TranslationDataModule, folder: Path, rank: int) -> Tokenizer:
    """Rank 0 loads or trains the run's tokenizer and saves it in `folder`; other ranks wait for it there.

    Every rank must see the same `folder`: under torchrun or SLURM set ``hydra.run.dir`` explicitly
    (its default holds the start time, which differs between processes) on a shared file system.
    """
    if rank > 0:
        deadline = time.monotonic() + TOKENIZER_WAIT_S
        if Tokenizer.load(folder) is None:
            log.info("rank %d: waiting for rank 0's tokenizer in %s", rank, folder)
        while Tokenizer.load(folder) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank {rank}: no tokenizer appeared in {folder} within {TOKENIZER_WAIT_S:.0f} s; "
                                   f"do all ranks share hydra.run.dir (set it explicitly) on a shared file system?")
            time.sleep(0.5)
    return datamodule.prepare_tokenizer(folder)


def new_module(cfg: DictConfig, tokenizer: Tokenizer) -> TranslationModule:
    """A freshly initialised module for the configured model, optimizer and decoding."""
    return TranslationModule(model=OmegaConf.to_container(cfg.model, resolve=True), tokenizer=tokenizer.state(),
                             optim=OmegaConf.to_container(cfg.optim), label_smoothing=cfg.label_smoothing,
                             decoding=OmegaConf.to_container(cfg.decoding))


def validate(cfg: DictConfig, trainer: L.Trainer, datamodule: TranslationDataModule, path: Path) -> dict:
    """A checkpoint's or model file's validation scores (greedy decoding); its own tokenizer encodes the data."""
    blob = modelfile.read(path)
    datamodule.tokenizer = Tokenizer.from_state(blob["tokenizer"])
    module = TranslationModule(model=blob["model"], tokenizer=blob["tokenizer"],
                               optim=OmegaConf.to_container(cfg.optim), label_smoothing=cfg.label_smoothing,
                               decoding=OmegaConf.to_container(cfg.decoding))
    module.model.load_state_dict(blob["state_dict"])
    return trainer.validate(module, datamodule, verbose=False)[0]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written with atomic_save. Lightning's own save renames from the system
    temp folder, which is a plain, interruptible copy when that folder is on another file system."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options: object = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        modelfile.atomic_save(checkpoint, path)


def write_model_file(checkpoints: list[Path], path: Path) -> None:
    """The model file from one checkpoint, or from the average of several checkpoints' weights."""
    blobs = [modelfile.read(c) for c in checkpoints]
    state = {k: sum(b["state_dict"][k].float() for b in blobs) / len(blobs) for k in blobs[0]["state_dict"]}
    first = blobs[0]
    modelfile.save(path, first["model"], state, first["tokenizer"], first["decoding"])
    log.info("model file %s (average of %d checkpoints: %s)", path, len(blobs), ", ".join(c.name for c in checkpoints))
