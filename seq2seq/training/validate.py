"""Score a checkpoint or model file on the validation split with a Trainer (greedy decoding, as in
training), under any trainer config: one process, or DDP ranks each decoding their share."""
from pathlib import Path

import lightning as L
from omegaconf import DictConfig

from seq2seq import modelfile
from seq2seq.cli import tidy_logging
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.training.builders import instantiate_group, make_trainer
from seq2seq.training.datamodule import TranslationDataModule
from seq2seq.training.lightning_module import TranslationModule
from seq2seq.training.ranks import rank_log


def validate(cfg: DictConfig) -> dict:
    """{"val/bleu", "val/chrf", "val/loss", "val/ppl"} of cfg.model_file; its own tokenizer encodes the data."""
    tidy_logging()
    L.seed_everything(cfg.seed, workers=True)
    contents = modelfile.read_contents(Path(cfg.model_file))
    trainer = make_trainer(cfg)
    with rank_log(Path(cfg.paths.run_dir), "validate", trainer.global_rank):
        datamodule: TranslationDataModule = instantiate_group(cfg.data, "data")
        datamodule.tokenizer = Tokenizer.from_state(contents["tokenizer"])
        module = TranslationModule(model=contents["model"], tokenizer=contents["tokenizer"], optim={},
                                   decoding=contents["decoding"])
        module.model.load_state_dict(contents["state_dict"])
        return trainer.validate(module, datamodule, verbose=False)[0]
