"""Validation by steps for long epochs: trainer.val_check_interval (optimizer steps, across epoch ends with
check_val_every_n_epoch=null), a cap on validation batches, checkpoints every N steps."""
import csv

import pytest
import torch

from conftest import TINY, compose_config
from seq2seq.training.lightning_module import TranslationModule
from seq2seq.training.train import train

STEP_CHECKPOINT = ("+callbacks.step_checkpoint={_target_: lightning.pytorch.callbacks.ModelCheckpoint, "
                   "dirpath: '${paths.run_dir}/checkpoints', filename: 'step{step}', auto_insert_metric_name: false, "
                   "every_n_train_steps: 7, save_top_k: -1, save_last: true, enable_version_counter: false}")


@pytest.mark.slow
def test_validation_and_checkpoints_every_n_steps_within_an_epoch(tmp_path, monkeypatch) -> None:
    validated = []  # sentences scored at each validation
    real_end = TranslationModule.on_validation_epoch_end

    def on_validation_epoch_end(self) -> None:
        validated.append(len(self._sentences))
        real_end(self)

    monkeypatch.setattr(TranslationModule, "on_validation_epoch_end", on_validation_epoch_end)
    run_dir = tmp_path / "run"
    results = train(compose_config("train", [
        *TINY, "data.train_limit=3000", "data.eval_limit=60", "data.eval_max_tokens=300", "trainer.max_steps=25",
        "trainer.val_check_interval=10", "trainer.check_val_every_n_epoch=null", "trainer.limit_val_batches=1",
        "trainer.log_every_n_steps=5", "decoding.beam_size=1", "decoding.max_len=30", STEP_CHECKPOINT], run_dir))

    with open(run_dir / "logs" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/bleu")]
    assert [(int(r["epoch"]), int(r["step"])) for r in rows] == [(0, 9), (0, 19)]  # two validations, one epoch
    assert len(validated) == 2 and 0 < validated[0] == validated[1] < 60  # one batch: part of the 60 sentences
    checkpoints = run_dir / "checkpoints"
    assert {p.name for p in checkpoints.glob("best-*.ckpt")} == {"best-epoch00-step10.ckpt", "best-epoch00-step20.ckpt"}
    assert {p.name for p in checkpoints.glob("step*.ckpt")} == {"step7.ckpt", "step14.ckpt", "step21.ckpt"}
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] >= 21 and last["epoch"] == 0
    assert "test/bleu" in results and (run_dir / "model.pt").is_file()
