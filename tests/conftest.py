"""Shared fixtures and helpers: Hydra configs composed as the scripts compose them, a tiny trained
model, tiny model files, in-process script runs."""
import functools
import logging
import os
import runpy
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports datasets, which reads them once
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

import seq2seq.config  # noqa: E402,F401  (registers the typed configs and the ${cpu_precision:} resolver)

# Tests check behaviour, not speed: one thread each keeps parallel test processes from
# oversubscribing the cores (OpenMP spin-waiting makes that dramatically slow).
torch.set_num_threads(int(os.environ.get("SEQ2SEQ_TEST_THREADS", "1")))

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A model small enough to train in seconds on two cores.
TINY = ["model.input_size=32", "model.hidden_size=32", "data.tokenizer.vocab_size=500",
        "data.max_tokens=1200", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def compose_config(name: str, overrides: list[str], run_dir: Path | None = None) -> DictConfig:
    """The config `scripts/<name>.py` would run with these overrides (run_dir replaces Hydra's)."""
    extra = [f"paths.run_dir={run_dir}", f"data.source.path={MULTI30K}", f"data.cache_dir={run_dir / 'data_cache'}"] \
        if run_dir is not None else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=[*extra, *overrides])


def run_script(name: str, *overrides: str) -> int:
    """Run scripts/<name>.py in this process as the command line would; its exit status.

    In-process saves seconds of imports per run; Hydra's logging setup is undone afterwards. Read the
    output with pytest's capsys/capfd.
    """
    argv, root = sys.argv, logging.getLogger()
    handlers, level = root.handlers[:], root.level  # Hydra points logging at this test's stderr
    sys.argv = [f"{name}.py", *overrides]
    try:
        runpy.run_path(str(ROOT / "scripts" / f"{name}.py"), run_name="__main__")
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
        root.handlers[:] = handlers
        root.setLevel(level)


def script_env(**extra: str) -> dict[str, str]:
    """The environment of a process the tests start: this checkout's code first (not an installed copy),
    one thread per process (parallel processes must not oversubscribe the cores), the hubs offline."""
    path = os.pathsep.join(p for p in (str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", **extra}


def one_line_error(capfd, *names: str) -> str:
    """stderr, checked to be exactly one `error: ...` line that names each of `names`."""
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for name in names:
        assert name in err, err
    return err


WIRINGS = ["luong", "bahdanau", "none", "cgru:luong", "cgru:bahdanau"]  # every decoder wiring the tests run


def wiring(name: str) -> dict[str, str]:
    """A wiring of WIRINGS as ModelConfig keys: "luong" -> {attention: luong}, "cgru:bahdanau" -> {decoder: cgru,
    attention: bahdanau}."""
    decoder, _, attention = name.rpartition(":")
    return {"attention": attention, "decoder": decoder or "gru"}


def random_source(lens: list[int], vocab: int, seed: int = 0, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids (1..vocab-1) right-padded with `pad`: src (B, S), src_lens (B,)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lens), max(lens)), pad)
    for i, n in enumerate(lens):
        src[i, :n] = torch.randint(1, vocab, (n,), generator=g)
    return src, torch.tensor(lens)


def checkpoint(path: Path) -> dict:
    """A Lightning checkpoint's contents, loaded as the project loads it (plain data only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


@functools.cache
def tiny_tokenizer(vocab_size: int):
    """A joint SentencePiece model trained on 1,000 Multi30k pairs (once per size and test session)."""
    from seq2seq.data.sources import read_lines
    from seq2seq.data.tokenizer import Tokenizer

    return Tokenizer.train(read_lines(MULTI30K / "train.en.gz")[:1000], read_lines(MULTI30K / "train.de.gz")[:1000],
                           vocab_size=vocab_size)


def tiny_model_file(path: Path, vocab_size: int = 500, overrides: tuple[str, ...] = ()) -> Path:
    """An untrained 16-unit model in a real model file: enough to test everything but quality; overrides:
    train.yaml's, e.g. ("model=gru_cgru",)."""
    from seq2seq import modelfile
    from seq2seq.config import ModelConfig
    from seq2seq.data.tokenizer import PAD
    from seq2seq.model import EncoderDecoder

    tokenizer = tiny_tokenizer(vocab_size)
    model_cfg = OmegaConf.to_container(compose_config("train", ["model.input_size=16", "model.hidden_size=16", *overrides]).model)
    torch.manual_seed(0)
    model = EncoderDecoder(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, PAD, ModelConfig(**model_cfg))
    modelfile.save(path, model_cfg, model.state_dict(), tokenizer.state(), {"beam_size": 2, "alpha": 1.0, "max_len": 20})
    return path


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory) -> None:
    """The default data.cache_dir of this session (scripts the tests start included), out of the checkout.
    compose_config(..., run_dir) gives each run its own cache instead."""
    os.environ["SEQ2SEQ_CACHE"] = str(tmp_path_factory.mktemp("data_cache"))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """An untrained tiny model file, shared by a module's tests."""
    return tiny_model_file(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="session")
def multi30k() -> Path:
    assert MULTI30K.is_dir(), f"Multi30k is expected at {MULTI30K}"
    return MULTI30K


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, multi30k) -> dict:
    """A tiny model trained for two short epochs on 3,000 Multi30k pairs: results and run folder."""
    from seq2seq.training.train import train

    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_config("train", [*TINY, "data.train_limit=3000", "data.eval_limit=300", "trainer.max_epochs=2",
                                   "optim.lr=3e-3", "model.dropout=0.1", "decoding.beam_size=2",
                                   "decoding.max_len=40"], run_dir)
    results = train(cfg)
    return {**results, "run_dir": run_dir, "cfg": cfg}
