"""Shared fixtures: Hydra configs composed as the scripts compose them, a tiny trained model."""
import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import seq2seq  # noqa: E402,F401  after the above (datasets reads them on import); registers ${cpu_precision:}

# Tests check behaviour, not speed: one thread each keeps parallel test processes from
# oversubscribing the cores (OpenMP spin-waiting makes that dramatically slow).
torch.set_num_threads(int(os.environ.get("SEQ2SEQ_TEST_THREADS", "1")))

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"

# A model small enough to train in seconds on two cores.
TINY = ["model.input_size=32", "model.hidden_size=32", "data.tokenizer.vocab_size=500",
        "data.max_tokens=1200", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def compose_config(name: str, overrides: list[str], run_dir: Path | None = None) -> DictConfig:
    """The config `scripts/<name>.py` would run with these overrides (run_dir replaces Hydra's)."""
    extra = [f"paths.run_dir={run_dir}", f"data.source.path={MULTI30K}"] if run_dir is not None else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=[*extra, *overrides])


@pytest.fixture(scope="session")
def multi30k() -> Path:
    assert MULTI30K.is_dir(), f"Multi30k is expected at {MULTI30K}"
    return MULTI30K


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, multi30k) -> dict:
    """A tiny model trained for two short epochs on 3,000 Multi30k pairs: results and run folder."""
    from seq2seq.train import train

    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_config("train", [*TINY, "data.train_limit=3000", "data.eval_limit=300", "trainer.max_epochs=2",
                                   "optim.lr=3e-3", "model.dropout=0.1", "decoding.beam_size=2",
                                   "decoding.max_len=40"], run_dir)
    results = train(cfg)
    return {**results, "run_dir": run_dir, "cfg": cfg}
