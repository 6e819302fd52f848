"""One training run from a composed Hydra config: fit, test with beam search, write the model file."""
import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from seq2seq import modelfile
from seq2seq.module import TranslationModule

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict:
    """Returns {"test/bleu", "test/chrf", "model_file", ...}."""
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.run_dir)
    datamodule = instantiate(cfg.data)
    tokenizer = datamodule.prepare_tokenizer(run_dir / "tokenizer")
    module = TranslationModule(model=OmegaConf.to_container(cfg.model, resolve=True),
                               tokenizer=tokenizer.state(), optim=OmegaConf.to_container(cfg.optim),
                               label_smoothing=cfg.label_smoothing,
                               decoding=OmegaConf.to_container(cfg.decoding))
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    loggers = [instantiate(c) for c in cfg.logger.values() if c is not None]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     default_root_dir=str(run_dir))
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
    return results


def write_model_file(checkpoints: list[Path], path: Path) -> None:
    """The model file from one checkpoint, or from the average of several checkpoints' weights."""
    blobs = [modelfile.read(c) for c in checkpoints]
    state = {k: sum(b["state_dict"][k].float() for b in blobs) / len(blobs) for k in blobs[0]["state_dict"]}
    first = blobs[0]
    modelfile.save(path, first["model"], state, first["tokenizer"], first["decoding"])
    log.info("model file %s (average of %d checkpoints: %s)", path, len(blobs), ", ".join(c.name for c in checkpoints))
