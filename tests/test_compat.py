"""Model files and checkpoints written by older code load, translate as they did, and resume training:
v1 from before the typed-config restructuring, v2 from before the package was grouped into sub-packages
(tests/fixtures/README.md)."""
import shutil

import pytest
import torch

from conftest import FIXTURES, TINY, checkpoint, compose_config
from seq2seq import modelfile
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.inference.translator import Translator


@pytest.mark.parametrize("name", ["model_v1.pt", "last_v1.ckpt", "model_v2.pt", "last_v2.ckpt"])
def test_old_files_translate_as_they_did(name: str) -> None:
    lines = (FIXTURES / "src.en").read_text(encoding="utf-8").splitlines()
    expected = (FIXTURES / name.replace(".pt", ".de").replace(".ckpt", ".de")).read_text(encoding="utf-8").splitlines()
    translator = Translator.load(str(FIXTURES / name), beam_size=2, max_len=20)
    assert translator.translate(lines) == expected
    assert len(expected) == len(lines) and any(expected)


def test_old_model_file_keeps_its_weights_and_settings() -> None:
    model, tokenizer, decoding = modelfile.load_model(FIXTURES / "model_v1.pt")
    stored = torch.load(FIXTURES / "model_v1.pt", weights_only=True)
    assert model.config.input_size == stored["model"]["input_size"] == 24
    assert decoding.beam_size == stored["decoding"]["beam_size"]
    for key, value in stored["state_dict"].items():
        torch.testing.assert_close(model.state_dict()[key], value)


@pytest.mark.slow
@pytest.mark.parametrize("name, size, pairs", [("last_v1.ckpt", 24, 3000), ("last_v2.ckpt", 16, 1500)])
def test_old_checkpoint_resumes_training(tmp_path, name: str, size: int, pairs: int) -> None:
    """resume=true from a last.ckpt written by the old code: it continues at its global step."""
    from seq2seq.training.train import train

    old = checkpoint(FIXTURES / name)
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(FIXTURES / name, tmp_path / "checkpoints" / "last.ckpt")
    steps = old["global_step"]
    overrides = [*TINY, f"model.input_size={size}", f"model.hidden_size={size}", "model.dropout=0.1", "optim.lr=3e-3",
                 f"data.train_limit={pairs}", "data.eval_limit=20", "trainer.max_epochs=3", "decoding.beam_size=2",
                 "decoding.max_len=20", "resume=true", "callbacks.curves=null", "logger.tensorboard=null"]
    # The tokenizer that trained the old checkpoint, as the old run folder held it.
    Tokenizer.from_state(old["tokenizer"]).save(tmp_path / "tokenizer")
    train(compose_config("train", overrides, tmp_path))
    resumed = checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] > steps and resumed["epoch"] == 2
