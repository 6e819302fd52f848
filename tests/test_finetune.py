"""Fine-tuning (init_from=...): a run starts from a model file's weights, tokenizer and model settings, with a
fresh optimizer and schedule; the command line may not contradict the file's model settings."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import instantiate

from conftest import MULTI30K, ROOT, TINY, checkpoint, compose_config, one_line_error, run_script
from seq2seq import modelfile
from seq2seq.config import ConfigError, ModelConfig
from seq2seq.training.train import stored_model_settings

STORED = {**ModelConfig().__dict__, "hidden_size": 32, "input_size": 32}
CONFIGURED = ModelConfig().__dict__  # conf/model/gru_luong.yaml's defaults, what a command line without model.* composes


def test_the_model_settings_of_the_stored_weights_replace_the_configured_ones() -> None:
    assert stored_model_settings(CONFIGURED, STORED, ["optim.lr=1e-4", "data.source.path=x"], "init_from=a.pt") == STORED


def test_a_model_setting_on_the_command_line_that_agrees_with_the_file_is_accepted() -> None:
    assert stored_model_settings({**CONFIGURED, "hidden_size": 32}, STORED, ["model.hidden_size=32"], "init_from=a.pt") \
        == STORED


def test_a_model_setting_on_the_command_line_that_contradicts_the_file_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"init_from=a.pt .*model\.hidden_size=64 \(it has 32\)") as e:
        stored_model_settings({**CONFIGURED, "hidden_size": 64, "dropout": 0.1}, STORED,
                              ["model.hidden_size=64", "+model.dropout=0.1"], "init_from=a.pt")
    assert "model.dropout=0.1 (it has 0.3)" in str(e.value) and "input_size" not in str(e.value)


def test_a_model_group_choice_is_checked_key_by_key() -> None:
    """model=gru_bahdanau sets every model key: those that differ from the file's are named."""
    with pytest.raises(ConfigError, match=r"model\.attention='bahdanau' \(it has 'luong'\)") as e:
        stored_model_settings({**CONFIGURED, "attention": "bahdanau"}, STORED, ["model=gru_bahdanau"], "resume=true")
    assert "model.hidden_size=256 (it has 32)" in str(e.value)


def test_init_from_with_resume_is_one_error_line(tmp_path, capfd) -> None:
    status = run_script("train", f"hydra.run.dir={tmp_path}", "init_from=runs/x/model.pt", "resume=true")
    assert status == 2
    one_line_error(capfd, "init_from=runs/x/model.pt", "resume=true")


def test_a_contradicting_model_override_is_one_error_line(tmp_path, model_file, capfd) -> None:
    """Through scripts/train.py: the 16-unit model file and model.hidden_size=64 on the command line; the run
    stops before it reads any data."""
    status = run_script("train", f"hydra.run.dir={tmp_path / 'run'}", f"data.source.path={MULTI30K}",
                        f"data.cache_dir={tmp_path / 'cache'}", f"init_from={model_file}", "model.hidden_size=64",
                        "model.input_size=16")
    assert status == 2
    one_line_error(capfd, f"init_from={model_file}", "model.hidden_size=64 (it has 16)")
    assert not (tmp_path / "cache").exists()


def test_a_missing_init_from_file_is_one_error_line(tmp_path, capfd) -> None:
    status = run_script("train", f"hydra.run.dir={tmp_path / 'run'}", f"data.source.path={MULTI30K}",
                        f"data.cache_dir={tmp_path / 'cache'}", f"init_from={tmp_path / 'none.pt'}")
    assert status == 2
    one_line_error(capfd, f"init_from={tmp_path / 'none.pt'}", "model file not found")


@pytest.fixture(scope="module")
def animals(tmp_path_factory) -> Path:
    """The shifted corpus: Multi30k's captions that name an animal (benchmarks/domain_split.py), split in train,
    200 val and 500 test pairs."""
    out = tmp_path_factory.mktemp("topics")
    subprocess.run([sys.executable, "-m", "benchmarks.domain_split", str(out)], cwd=ROOT, check=True)
    return out / "animals"


def heldout_loss(model: Path, corpus: Path, run_dir: Path) -> float:
    """Teacher-forced loss per target token of `model` on `corpus`'s held-out test split."""
    from seq2seq.training.validate import validate

    cfg = compose_config("validate", [f"model_file={model}", f"data.source.path={corpus}", "data.eval_limit=null",
                                      "data.source.splits.val=test_2016_flickr", "trainer.enable_progress_bar=false",
                                      "trainer.enable_model_summary=false", "trainer.limit_val_batches=null"], run_dir)
    return validate(cfg)["val/loss"]


@pytest.fixture(scope="module")
def finetuned(trained_run, animals, tmp_path_factory) -> dict:
    """trained_run's checkpoint (a tiny model, 2 epochs on the first 3,000 Multi30k pairs) continued for 2 epochs on
    the animal captions, from a config that says 256 units and vocabulary 8000 (the defaults): results, cfg, run
    folder, the checkpoint started from."""
    from seq2seq.training.train import train

    start = trained_run["run_dir"] / "checkpoints" / "last.ckpt"
    run_dir = tmp_path_factory.mktemp("finetune")
    cfg = compose_config("train", [f"init_from={start}", f"data.source.path={animals}", "data.max_tokens=1200",
                                   "trainer.max_epochs=2", "optim.lr=1e-3", "decoding.beam_size=1",
                                   "decoding.max_len=40", *TINY[4:]], run_dir)
    assert cfg.model.hidden_size == 256 and cfg.data.tokenizer.vocab_size == 8000
    return {**train(cfg), "cfg": cfg, "run_dir": run_dir, "start": start}


@pytest.mark.slow
def test_fine_tuning_lowers_the_loss_on_the_new_domain(finetuned, animals, tmp_path) -> None:
    """Its loss on the animal captions' held-out test pairs falls below the starting model's. The run kept the
    checkpoint's tokenizer and 32-unit model, and its optimizer started afresh: its step count is its own two
    epochs, not the checkpoint's steps plus those."""
    start, run_dir = finetuned["start"], finetuned["run_dir"]
    started, tuned = modelfile.read_contents(start), modelfile.read_contents(finetuned["model_file"])
    assert tuned["tokenizer"] == started["tokenizer"] and tuned["model"] == started["model"]
    assert not (run_dir / "data_cache" / "tokenizer").exists()  # no tokenizer was trained
    data = instantiate(finetuned["cfg"].data)
    data.prepare_tokenizer(run_dir / "tokenizer")
    data.setup("fit")
    steps = 2 * len(data.train_dataloader())  # two epochs of the animal captions, from step 0
    last = checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == steps and checkpoint(start)["global_step"] > 0
    assert {float(s["step"]) for s in last["optimizer_states"][0]["state"].values()} == {steps}  # Adam's own count
    before = heldout_loss(start, animals, tmp_path / "before")
    after = heldout_loss(Path(finetuned["model_file"]), animals, tmp_path / "after")
    assert after < before, (before, after)


@pytest.mark.slow
def test_a_fine_tuning_run_resumes_without_its_model_settings_on_the_command_line(finetuned, animals,
                                                                                  tmp_path) -> None:
    """resume=true (of a copy of the run folder) takes the model settings from the checkpoint: the config still
    says 256 units."""
    from seq2seq.training.train import train

    run_dir = tmp_path / "resumed"
    shutil.copytree(finetuned["run_dir"], run_dir)
    steps = checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"]
    train(compose_config("train", [f"data.source.path={animals}", "data.max_tokens=1200", "trainer.max_epochs=3",
                                   "resume=true", "decoding.beam_size=1", "decoding.max_len=40", *TINY[4:]], run_dir))
    resumed = checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == steps * 3 // 2 and resumed["hyper_parameters"]["model"]["hidden_size"] == 32
