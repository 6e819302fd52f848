"""Data-parallel training for real: two CPU processes over gloo, started by Lightning and by torchrun."""
import csv
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hydra.utils import instantiate

from conftest import CONF, MULTI30K, ROOT, TINY, checkpoint, compose_config, script_env
from seq2seq.atomic_files import RunError
from seq2seq.data.batching import TokenBatchSampler
from seq2seq.data.sources import read_lines
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.evaluation import corpus_scores
from seq2seq.inference.translator import Translator
from seq2seq.training import train as train_mod
from seq2seq.training.train import shared_tokenizer, train
from seq2seq.training.validate import validate

pytestmark = pytest.mark.slow  # every test here trains a model or starts processes

EVAL_LIMIT = 100
# Long enough for non-zero scores; eval_max_tokens makes several evaluation batches (an odd number).
RUN = [*TINY, "data.train_limit=2000", f"data.eval_limit={EVAL_LIMIT}", "data.eval_max_tokens=600",
       "optim.lr=0.01", "decoding.beam_size=2", "decoding.max_len=40"]
DDP = ["trainer=ddp_cpu"]  # 2 processes, gloo
# scripts/validate.py, writing each rank's results as JSON to rank<N>.json in the run folder (a
# @hydra.main script, as Lightning's launcher expects)
ENTRY = '''import json
import os
import hydra
import seq2seq.config
from seq2seq.training.{name} import {name}


@hydra.main(version_base="1.3", config_path={conf!r}, config_name="{name}")
def main(cfg):
    results = {name}(cfg)
    with open(os.path.join(cfg.paths.run_dir, "rank" + os.environ.get("RANK", "0") + ".json"), "w") as f:
        json.dump(results, f)


main()
'''




def run(cmd: list[str]) -> str:
    """Run a training command (conftest.script_env: one thread, as in-process runs); its stdout + stderr."""
    proc = subprocess.run(cmd, cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def datamodule(run_dir: Path, stage: str):
    """The runs' datamodule, set up for `stage` with the tokenizer saved in `run_dir` (no trainer: one rank)."""
    dm = instantiate(compose_config("train", RUN, run_dir).data)
    dm.prepare_tokenizer(run_dir / "tokenizer")
    dm.setup(stage)
    return dm


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, multi30k) -> Path:
    """One epoch on 2 processes started by Lightning (rank 1 re-runs scripts/train.py): the run folder."""
    run_dir = tmp_path_factory.mktemp("ddp")
    out = run([sys.executable, "scripts/train.py", *DDP, *RUN, "trainer.max_epochs=1",
               f"data.source.path={multi30k}", f"data.cache_dir={run_dir / 'cache'}", f"hydra.run.dir={run_dir}"])
    (run_dir / "output.txt").write_text(out)
    return run_dir


@pytest.fixture(scope="module")
def resumed_run(ddp_run, tmp_path_factory) -> Path:
    """The DDP run continued for a second epoch in one process (resume=true): the run folder."""
    run_dir = tmp_path_factory.mktemp("resumed")
    shutil.copytree(ddp_run / "tokenizer", run_dir / "tokenizer")
    (run_dir / "checkpoints").mkdir()
    shutil.copy(ddp_run / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "last.ckpt")
    # A moved run folder: without this, Lightning saves last-v1.ckpt beside the copied last.ckpt.
    train(compose_config("train", [*RUN, "trainer.max_epochs=2", "resume=true",
                                   "++callbacks.model_checkpoint.enable_version_counter=false"], run_dir))
    return run_dir


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_batches_without_losing_sentences(shuffle, world):
    lens = [(i * 7) % 23 + 1 for i in range(500)]
    whole = TokenBatchSampler(lens, lens, 120, shuffle, seed=3).batches()
    ranks = [TokenBatchSampler(lens, lens, 120, shuffle, seed=3, rank=r, world_size=world).batches()
             for r in range(world)]
    seen = [i for batches in ranks for b in batches for i in b]
    assert set(seen) == set(range(len(lens)))  # nothing dropped
    extra = sum(map(len, ranks)) - len(whole)
    assert 0 <= extra < world  # at most world-1 repeated batches (DistributedSampler's padding)
    if shuffle:  # equal optimizer steps on every rank
        assert len({len(b) for b in ranks}) == 1


def test_ranks_above_zero_wait_for_rank_zero_tokenizer(tmp_path, monkeypatch):
    cfg = compose_config("train", [*TINY, "data.train_limit=300"], tmp_path)
    trained = []
    real_train = Tokenizer.train
    monkeypatch.setattr(Tokenizer, "train", classmethod(lambda cls, *a, **k: trained.append(1) or real_train(*a, **k)))
    folder = tmp_path / "tokenizer"
    got = {}
    rank1 = threading.Thread(target=lambda: got.update(t=shared_tokenizer(instantiate(cfg.data), folder, 1)))
    rank1.start()
    time.sleep(1.0)
    assert rank1.is_alive() and not trained  # rank 1 waits instead of training its own
    tokenizer = shared_tokenizer(instantiate(cfg.data), folder, 0)
    rank1.join(timeout=30)
    assert trained == [1] and got["t"].state() == tokenizer.state()

    monkeypatch.setattr(train_mod, "TOKENIZER_WAIT_S", 0.2)
    with pytest.raises(RunError, match="hydra.run.dir"):
        shared_tokenizer(instantiate(cfg.data), tmp_path / "elsewhere", 1)


def test_ddp_training_run(ddp_run):
    out = (ddp_run / "output.txt").read_text()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in out
    assert out.count("training SentencePiece") == 1  # rank 1 read rank 0's tokenizer
    assert "rank 1: fit ended" in (ddp_run / "train_rank1.log").read_text()  # rank 1 ran in the same run folder
    # rank 1's log has its own name, not Lightning's train_ddp_process_<local rank>.log (the same on every node)
    assert not list(ddp_run.glob("train_ddp_process_*")) and "rank 1:" not in (ddp_run / "train.log").read_text()
    assert checkpoint(ddp_run / "checkpoints" / "last.ckpt")["epoch"] == 0

    hyps = (ddp_run / "test.hyp").read_text(encoding="utf-8").splitlines()
    assert len(hyps) == EVAL_LIMIT  # every test sentence once, none of the padding repeats
    refs = read_lines(MULTI30K / "test_2016_flickr.de.gz")[:EVAL_LIMIT]
    with open(ddp_run / "logs" / "metrics.csv") as f:
        logged = next(row for row in csv.DictReader(f) if row["test/chrf"])
    chrf = corpus_scores(hyps, refs, ("chrf",))["chrf"]
    assert chrf > 0 and float(logged["test/chrf"]) == pytest.approx(chrf, abs=1e-4)  # in corpus order

    sources = read_lines(MULTI30K / "test_2016_flickr.en.gz")[:EVAL_LIMIT]
    for model in ("model.pt", "checkpoints/last.ckpt"):  # DDP's files translate in one process, as DDP tested
        assert Translator.load(str(ddp_run / model), beam_size=2, max_len=40).translate(sources) == hyps


def test_one_process_resumes_a_ddp_checkpoint(ddp_run, resumed_run):
    before = checkpoint(ddp_run / "checkpoints" / "last.ckpt")
    after = checkpoint(resumed_run / "checkpoints" / "last.ckpt")
    assert after["epoch"] == 1  # one more epoch, the whole of it in one process
    assert after["global_step"] == before["global_step"] + len(datamodule(resumed_run, "fit").train_dataloader())


def test_ddp_validation_scores_equal_one_process(resumed_run, tmp_path):
    """A one-process checkpoint scored by 2 torchrun ranks: the same BLEU, chrF and loss to the bit."""
    model = resumed_run / "checkpoints" / "last.ckpt"
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY.format(name="validate", conf=str(CONF)))
    data = [f"data.eval_limit={EVAL_LIMIT}", "data.eval_max_tokens=600", f"model_file={model}",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(entry),
         *DDP, *data, f"data.source.path={MULTI30K}", f"hydra.run.dir={tmp_path / 'ddp'}"])
    ranks = [json.loads(path.read_text()) for path in sorted((tmp_path / "ddp").glob("rank*.json"))]
    single = validate(compose_config("validate", data, tmp_path / "single"))

    assert len(ranks) == 2 and ranks[0] == ranks[1]
    # Hydra's files are rank 0's: torchrun's rank 1 wrote neither into validate.log nor .hydra/, only its own log
    rank0 = (tmp_path / "ddp" / "entry.log").read_text()  # ENTRY imports Lightning before Hydra sets up logging
    assert "GLOBAL_RANK: 0," in rank0 and "GLOBAL_RANK: 1" not in rank0
    assert "GLOBAL_RANK: 1" in (tmp_path / "ddp" / "validate_rank1.log").read_text()
    assert single["val/bleu"] > 0
    assert {k: ranks[0][k] for k in single} == single
    # an odd number of batches: one rank had a batch fewer, or repeated one
    assert len(datamodule(resumed_run, "validate").val_dataloader()) % 2 == 1
