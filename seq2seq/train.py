"""One training run from a composed Hydra config: fit, write the model file, test it with beam search.

Data-parallel runs (``trainer=ddp``) execute this once per process: Lightning's launcher re-runs the
script for ranks > 0 (same ``hydra.run.dir``), torchrun and SLURM start every rank themselves. Rank 0
alone trains the tokenizer and writes files; the other ranks wait for its tokenizer and read it.
"""
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from seq2seq import modelfile
from seq2seq.cli import tidy_logging
from seq2seq.config import ConfigError
from seq2seq.data import TranslationDataModule
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.evaluation import literature_bleu
from seq2seq.module import TranslationModule, check_label_smoothing

log = logging.getLogger(__name__)

TOKENIZER_WAIT_S = 3600.0  # how long ranks > 0 wait for rank 0 to train the tokenizer


def train(cfg: DictConfig) -> dict:
    """Returns {"test/bleu", "test/chrf", "test/bleu_lit", "test/loss", "test/ppl", "model_file", "val/bleu"
    (the best validation BLEU, when validation ran)}; test/bleu_lit on global rank 0 only."""
    tidy_logging()
    check_settings(cfg)  # every setting, before any work is done
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.run_dir)
    trainer = make_trainer(cfg)  # first: it knows this process's global rank
    datamodule: TranslationDataModule = instantiate_group(cfg.data, "data")
    tokenizer = shared_tokenizer(datamodule, run_dir / "tokenizer", trainer.global_rank)
    module = new_module(cfg, tokenizer)
    last = run_dir / "checkpoints" / "last.ckpt"
    if cfg.resume and not last.exists():
        raise ConfigError(f"resume=true but {last} does not exist (set hydra.run.dir to the run to resume)")
    trainer.fit(module, datamodule, ckpt_path=str(last) if cfg.resume else None)

    model_file = run_dir / "model.pt"
    if trainer.is_global_zero:
        modelfile.write_average(best_checkpoints(trainer, cfg.average_checkpoints) or [last], model_file)
    trainer.strategy.barrier()
    module.model.load_state_dict(modelfile.read_contents(model_file)["state_dict"])
    module.hypothesis_file = run_dir / "test.hyp"
    results = {**trainer.test(module, datamodule, verbose=False)[0], "model_file": str(model_file)}
    if trainer.is_global_zero:  # the literature's BLEU of the hypotheses just written (rank 0 wrote them)
        hyps = module.hypothesis_file.read_text(encoding="utf-8").splitlines()
        refs = list(datamodule.load("test")["tgt"])
        results["test/bleu_lit"] = literature_bleu(hyps, refs, datamodule.tgt_lang)
    ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    if ckpt is not None and ckpt.monitor == "val/bleu" and ckpt.best_model_score is not None:
        results["val/bleu"] = float(ckpt.best_model_score)  # the best validation BLEU: what a sweep optimises
    return results


def check_settings(cfg: DictConfig) -> None:
    """The settings that no constructor checks before work starts: the typed groups (building them runs
    their checks) and the top-level keys. Data, trainer, callbacks and loggers are checked as they are
    built (instantiate_group), before the tokenizer is trained."""
    for group in ("model", "optim", "decoding"):
        OmegaConf.to_object(cfg[group])
    check_label_smoothing(cfg.label_smoothing)
    for key, low in (("average_checkpoints", 0), ("seed", 0)):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")


def instantiate_group(node: DictConfig, group: str, **kwargs):
    """hydra.utils.instantiate; a constructor rejecting the settings becomes one ConfigError naming the group."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, (ValueError, TypeError, MisconfigurationException)):
            raise ConfigError(f"{group}: {cause}") from e
        raise


def best_checkpoints(trainer: L.Trainer, k: int) -> list[Path]:
    """The top-k checkpoints by the monitored score (val BLEU), best first; [] if none was saved."""
    ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    if ckpt is None:
        return []
    ranked = sorted(ckpt.best_k_models.items(), key=lambda item: float(item[1]), reverse=True)
    return [Path(path) for path, _ in ranked[:k]]


def make_trainer(cfg: DictConfig, extra_callbacks: Sequence[Callback] = ()) -> L.Trainer:
    """The configured Trainer with its callbacks and loggers, rooted in the run folder."""
    callbacks = [instantiate_group(c, f"callbacks.{name}") for name, c in (cfg.get("callbacks") or {}).items()
                 if c is not None]
    loggers = [instantiate_group(c, f"logger.{name}") for name, c in (cfg.get("logger") or {}).items() if c is not None]
    return instantiate_group(cfg.trainer, "trainer", callbacks=[*callbacks, *extra_callbacks], logger=loggers or False,
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
                             optim=OmegaConf.to_container(cfg.optim, resolve=True), label_smoothing=cfg.label_smoothing,
                             decoding=OmegaConf.to_container(cfg.decoding, resolve=True))
