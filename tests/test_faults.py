"""Nothing lost, nothing half-written: SIGKILL and resume, NaN loss, atomic checkpoints and outputs."""
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback

from conftest import MULTI30K, ROOT, TINY, checkpoint, compose_config, tiny_model_file
from seq2seq.cli import output_file
from seq2seq.data.batching import ResumableLoader, TokenBatchSampler
from seq2seq.files import atomic_save
from seq2seq.model import EncoderDecoder
from seq2seq.train import train

pytestmark = pytest.mark.slow  # every test here trains a model or starts processes

STEP_CHECKPOINTS = 3
KILL_AT_STEP = 17  # in the second epoch, two steps after the step checkpoint at 15
# A tiny deterministic run (no dropout) that keeps last.ckpt every STEP_CHECKPOINTS steps and records its batches.
RUN = [*TINY, "model.dropout=0.0", "data.train_limit=300", "data.eval_limit=60", "trainer.max_epochs=2",
       "decoding.beam_size=1", "decoding.max_len=20", "logger={}", "++callbacks.throughput=null", "++callbacks.curves=null",
       "++trainer.plugins=[{_target_:seq2seq.callbacks.AtomicCheckpointIO}]",
       "+callbacks.step_checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
       "+callbacks.step_checkpoint.dirpath=${paths.run_dir}/checkpoints",
       f"+callbacks.step_checkpoint.every_n_train_steps={STEP_CHECKPOINTS}",
       "+callbacks.step_checkpoint.save_top_k=0", "+callbacks.step_checkpoint.save_last=true",
       "+callbacks.step_checkpoint.enable_version_counter=false",
       "+callbacks.record._target_=test_faults.BatchRecorder", "+callbacks.record.path=${paths.run_dir}/batches.txt"]


class BatchRecorder(Callback):
    """Test-only: appends `epoch step id,id,...` to `path` for every trained batch; with `kill_at_step`
    the process SIGKILLs itself after that step (before any checkpoint of that step is written)."""

    def __init__(self, path: str, kill_at_step: int | None = None) -> None:
        self.path, self.kill_at_step = path, kill_at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: dict, batch_idx: int) -> None:
        with open(self.path, "a") as f:
            f.write(f"{trainer.current_epoch} {trainer.global_step} {','.join(map(str, batch['ids'].tolist()))}\n")
        if trainer.global_step == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)


def records(run_dir: Path) -> list[tuple[int, int, list[int]]]:
    """(epoch, global step after the batch, sentence ids) of each trained batch, in order."""
    lines = (run_dir / "batches.txt").read_text().splitlines()
    return [(int(e), int(s), [int(i) for i in ids.split(",")]) for e, s, ids in (line.split() for line in lines)]


def train_script(run_dir: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), f"hydra.run.dir={run_dir}",
                             f"data.source.path={MULTI30K}", *RUN, *overrides],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def callback_state(ckpt: dict, name: str) -> dict:
    return next(v for k, v in ckpt["callbacks"].items() if k.startswith(name))


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    cfg = compose_config("train", RUN, straight)
    instantiate(cfg.data).prepare_tokenizer(straight / "tokenizer")
    shutil.copytree(straight / "tokenizer", killed / "tokenizer")  # both runs encode alike

    victim = train_script(killed, f"+callbacks.record.kill_at_step={KILL_AT_STEP}")
    train(cfg)  # the uninterrupted run, meanwhile, in this process
    out = victim.communicate(timeout=300)[0]
    assert victim.returncode == -signal.SIGKILL, out[-3000:]

    before_kill = records(killed)
    assert before_kill[-1][1] == KILL_AT_STEP
    saved = checkpoint(killed / "checkpoints" / "last.ckpt")
    step = saved["global_step"]
    assert step == KILL_AT_STEP - KILL_AT_STEP % STEP_CHECKPOINTS
    loader = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    per_epoch = sum(1 for r in records(straight) if r[0] == 0)
    assert loader == {"epoch": 1, "position": step - per_epoch}  # mid-epoch

    train(compose_config("train", [*RUN, "resume=true"], killed))  # what `scripts/train.py resume=true` runs

    # Batches of the lost steps are trained again; every other batch exactly once, in the same order.
    assert [r for r in before_kill if r[1] <= step] + records(killed)[len(before_kill):] == records(straight)
    for epoch in (0, 1):
        ids = [i for e, _, batch in records(straight) if e == epoch for i in batch]
        assert len(ids) == len(set(ids)) > 250
    assert [r[2] for r in records(straight) if r[0] == 0] != [r[2] for r in records(straight) if r[0] == 1]

    a, b = checkpoint(straight / "checkpoints" / "last.ckpt"), checkpoint(killed / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 2 * per_epoch
    for key in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][key], b["state_dict"][key], rtol=1e-4, atol=1e-5)
    assert a["optimizer_states"][0]["state"][0]["step"] == b["optimizer_states"][0]["state"][0]["step"]
    assert a["lr_schedulers"][0]["num_bad_epochs"] == b["lr_schedulers"][0]["num_bad_epochs"]
    stop_a, stop_b = callback_state(a, "EarlyStopping"), callback_state(b, "EarlyStopping")
    assert stop_a["patience"] == stop_b["patience"]  # wait_count is not compared: the tiny model ties at BLEU 0
    torch.testing.assert_close(stop_a["best_score"], stop_b["best_score"], rtol=0, atol=0.05)  # BLEU points
    best_a = callback_state(a, "ModelCheckpoint{'monitor': 'val/bleu'")["best_model_score"]
    best_b = callback_state(b, "ModelCheckpoint{'monitor': 'val/bleu'")["best_model_score"]
    torch.testing.assert_close(best_a, best_b, rtol=0, atol=0.05)
    assert (killed / "model.pt").is_file() and not list(killed.glob("checkpoints/.*tmp*"))


def test_resumable_loader_continues_after_the_last_trained_batch():
    lens = [3, 5, 7, 2, 9, 4, 6, 8, 5, 3, 7, 2]
    make = lambda: ResumableLoader(list(range(len(lens))), collate_fn=list,  # noqa: E731
                                   batch_sampler=TokenBatchSampler(lens, lens, 20, shuffle=True, seed=7))
    full = make()
    full.batch_sampler.set_epoch(3)
    epoch = list(full)
    first = make()
    first.batch_sampler.set_epoch(3)
    it = iter(first)
    head = [next(it), next(it)]
    state = first.state_dict()
    assert state == {"epoch": 3, "position": 2}

    second = make()
    second.load_state_dict(state)
    rest = iter(second)  # made before set_epoch, as Lightning does when it restores
    second.batch_sampler.set_epoch(3)
    assert head + list(rest) == epoch
    assert second.state_dict() == {"epoch": 3, "position": len(epoch)}
    second.batch_sampler.set_epoch(4)
    assert list(second) != epoch and sorted(sum(list(second), [])) == list(range(len(lens)))

    done = make()
    done.load_state_dict({"epoch": 3, "position": len(epoch)})  # saved at the end of epoch 3
    assert done.batch_sampler.epoch == 4 and len(list(done)) == len(done.batch_sampler)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    forward, calls = EncoderDecoder.forward, []

    def poisoned(self, *args, **kwargs):  # the fifth training batch gives NaN logits
        calls.append(1)
        logits = forward(self, *args, **kwargs)
        return logits * float("nan") if len(calls) == 5 else logits

    monkeypatch.setattr(EncoderDecoder, "forward", poisoned)
    with pytest.raises(FloatingPointError, match="at step 4"):
        train(compose_config("train", RUN, tmp_path))
    last = checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] == STEP_CHECKPOINTS
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert not (tmp_path / "model.pt").exists()


@pytest.fixture(scope="module", autouse=True)
def checkpoint_writer(tmp_path_factory) -> tuple[subprocess.Popen, Path]:
    """A process that saves big checkpoints in a loop once it reads a line; started first, so that its
    slow start (imports) overlaps other tests."""
    path = tmp_path_factory.mktemp("writer") / "last.ckpt"
    code = ("import sys, torch; from seq2seq.modelfile import atomic_save\n"
            "sys.stdin.readline(); n = 0\n"
            "while True:\n"
            "    atomic_save({'n': n, 'w': torch.full((4_000_000,), float(n))}, sys.argv[1]); n += 1\n"
            "    print(n, flush=True)\n")
    writer = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    yield writer, path
    writer.kill()
    writer.wait()


def test_a_write_killed_midway_leaves_the_previous_checkpoint(checkpoint_writer):
    writer, path = checkpoint_writer
    writer.stdin.write("go\n")
    writer.stdin.flush()
    assert writer.stdout.readline().strip() == "1"  # one complete save, then kill during later ones
    time.sleep(0.3)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    blob = torch.load(path, weights_only=True)
    assert bool((blob["w"] == blob["n"]).all())


def test_atomic_save_failing_midway_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.pt"
    atomic_save({"v": torch.ones(3)}, path)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        atomic_save({"v": torch.zeros(3), "bad": lambda: 0}, path)  # pickling fails mid-write
    torch.testing.assert_close(torch.load(path, weights_only=True)["v"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


@pytest.fixture(scope="module", autouse=True)
def translating(tmp_path_factory) -> tuple[subprocess.Popen, Path]:
    """scripts/translate.py reading stdin that never ends, started first (its start overlaps other tests)."""
    folder = tmp_path_factory.mktemp("translate")
    model = tiny_model_file(folder / "model.pt")
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "translate.py"), f"model_file={model}",
                                "input=-", f"output={folder / 'out.de'}"],
                               cwd=folder, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdin.write("A dog runs.\nTwo cats sleep.\n")
    process.stdin.flush()
    yield process, folder
    process.kill()
    process.wait()


def test_a_killed_translation_leaves_no_output_file(translating):
    process, folder = translating
    deadline = time.monotonic() + 120
    while not list(folder.glob(".out.de*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # until the output is open (model loaded, input being read)
    assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (folder / "out.de").exists()
    assert [p.name for p in folder.glob(".out.de*")] == [f".out.de.tmp{process.pid}"]


def test_interrupted_output_is_never_left_under_its_name(tmp_path):
    out = tmp_path / "out.de"
    with pytest.raises(KeyboardInterrupt):
        with output_file(str(out)) as f:
            f.write("half a translation\n")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with output_file(str(out)) as f:
        f.write("done\n")
    assert out.read_text() == "done\n" and list(tmp_path.iterdir()) == [out]
