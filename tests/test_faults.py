"""Nothing lost, nothing half-written: SIGKILL and resume, NaN loss, atomic checkpoints and outputs."""
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback

from conftest import MULTI30K, ROOT, TINY, checkpoint, compose_config, run_script, script_env, tiny_model_file, tiny_tokenizer
from seq2seq.atomic_files import RunError, atomic_save
from seq2seq.cli import output_file
from seq2seq.data.batching import ResumableLoader, TokenBatchSampler
from seq2seq.data.sources import read_lines
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.model import EncoderDecoder
from seq2seq.modelfile import load_model
from seq2seq.plots import read_metrics
from seq2seq.training import lock as lock_mod
from seq2seq.training import train as train_mod
from seq2seq.training.callbacks import HistoryCSVLogger
from seq2seq.training.lock import RunLock
from seq2seq.training.train import shared_tokenizer, train

pytestmark = pytest.mark.slow  # every test here trains a model or starts processes

STEP_CHECKPOINTS = 3
KILL_AT_STEP = 17  # in the second epoch, two steps after the step checkpoint at 15
# A tiny deterministic run (no dropout) that keeps last.ckpt every STEP_CHECKPOINTS steps and records its batches.
RUN = [*TINY, "model.dropout=0.0", "data.train_limit=300", "data.eval_limit=60", "trainer.max_epochs=2",
       "decoding.beam_size=1", "decoding.max_len=20", "logger={}", "++callbacks.throughput=null", "++callbacks.curves=null",
       "++trainer.plugins=[{_target_:seq2seq.training.callbacks.AtomicCheckpointIO}]",
       "+callbacks.step_checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
       "+callbacks.step_checkpoint.dirpath=${paths.run_dir}/checkpoints",
       f"+callbacks.step_checkpoint.every_n_train_steps={STEP_CHECKPOINTS}",
       "+callbacks.step_checkpoint.save_top_k=0", "+callbacks.step_checkpoint.save_last=true",
       "+callbacks.step_checkpoint.enable_version_counter=false",
       "+callbacks.record._target_=test_faults.BatchRecorder", "+callbacks.record.path=${paths.run_dir}/batches.txt"]


class BatchRecorder(Callback):
    """Test-only: appends `epoch step id,id,...` to `path` for every trained batch; with `kill_at_step`
    the process sends itself `signal` (SIGKILL by default) after that step (before any checkpoint of that step),
    under DDP only the process of global rank `rank` when it is given."""

    def __init__(self, path: str, kill_at_step: int | None = None, signal: int = signal.SIGKILL,
                 rank: int | None = None) -> None:
        self.path, self.kill_at_step, self.signal, self.rank = path, kill_at_step, signal, rank

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: dict, batch_idx: int) -> None:
        with open(self.path, "a") as f:
            f.write(f"{trainer.current_epoch} {trainer.global_step} {','.join(map(str, batch['ids'].tolist()))}\n")
        if trainer.global_step == self.kill_at_step and self.rank in (None, trainer.global_rank):
            os.kill(os.getpid(), self.signal)


def records(run_dir: Path) -> list[tuple[int, int, list[int]]]:
    """(epoch, global step after the batch, sentence ids) of each trained batch, in order."""
    lines = (run_dir / "batches.txt").read_text().splitlines()
    return [(int(e), int(s), [int(i) for i in ids.split(",")]) for e, s, ids in (line.split() for line in lines)]


def train_script(run_dir: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), f"hydra.run.dir={run_dir}",
                             f"data.source.path={MULTI30K}", *RUN, *overrides],
                            cwd=ROOT, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def callback_state(ckpt: dict, name: str) -> dict:
    return next(v for k, v in ckpt["callbacks"].items() if k.startswith(name))


PER_EPOCH = 12  # training batches of RUN's epoch
# name: (signal, the step after which the run sends it to itself)
STOPS = {"SIGKILL": (signal.SIGKILL, KILL_AT_STEP), "SIGINT": (signal.SIGINT, KILL_AT_STEP),
         "SIGTERM": (signal.SIGTERM, KILL_AT_STEP), "SIGINT_at_epoch_end": (signal.SIGINT, PER_EPOCH)}


@pytest.fixture(scope="module")
def stopped_runs(tmp_path_factory) -> dict:
    """An uninterrupted run ("straight") and runs of the same config that send themselves a signal after a
    step (STOPS), all started together: {name: (run folder, exit status, output)}."""
    root = tmp_path_factory.mktemp("stopped")
    straight = root / "straight"
    cfg = compose_config("train", RUN, straight)
    instantiate(cfg.data).prepare_tokenizer(straight / "tokenizer")
    victims = {}
    for name, (signum, step) in STOPS.items():
        shutil.copytree(straight / "tokenizer", root / name / "tokenizer")  # all runs encode alike
        victims[name] = train_script(root / name, f"+callbacks.record.kill_at_step={step}",
                                     f"+callbacks.record.signal={int(signum)}")
    train(cfg)  # the uninterrupted run, meanwhile, in this process
    runs = {"straight": (straight, 0, "")}
    for name, victim in victims.items():
        out = victim.communicate(timeout=600)[0]
        runs[name] = (root / name, victim.returncode, out)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("stop", STOPS)
def test_a_stopped_run_resumes_to_the_weights_of_an_uninterrupted_run(stopped_runs, stop):
    straight = stopped_runs["straight"][0]
    killed, status, out = stopped_runs[stop]
    signum, at_step = STOPS[stop]
    before_kill = records(killed)
    saved = checkpoint(killed / "checkpoints" / "last.ckpt")
    step = saved["global_step"]
    if signum == signal.SIGKILL:
        assert status == -signal.SIGKILL, out[-3000:]
        assert before_kill[-1][1] == at_step
        assert step == at_step - at_step % STEP_CHECKPOINTS  # the last step checkpoint
    else:  # Ctrl+C or SIGTERM: a checkpoint of the step just trained, a one-line note, 128 + signal number
        assert status == 128 + signum, out[-3000:]
        # at an epoch's end the run stops after the next batch, once the epoch is validated
        assert before_kill[-1][1] == step == (at_step + 1 if at_step == PER_EPOCH else at_step)
        assert "Traceback" not in out
        [note] = [line for line in out.splitlines() if line.startswith("interrupted:")]
        assert f"{signal.Signals(signum).name} at step {step}" in note and "resume=true" in note
    loader = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    per_epoch = sum(1 for r in records(straight) if r[0] == 0)
    assert per_epoch == PER_EPOCH
    assert loader == {"epoch": 1, "position": step - per_epoch, "world_size": 1, "done": 0}  # mid-epoch
    if signum == signal.SIGTERM:  # the run folder's tokenizer replaced: the checkpoint's wins
        shutil.rmtree(killed / "tokenizer")
        tiny_tokenizer(400).save(killed / "tokenizer")

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
    assert Tokenizer.load(killed / "tokenizer").state() == a["tokenizer"]


@pytest.mark.slow
def test_ddp_ranks_stop_together_when_one_gets_sigterm_and_one_device_resumes_the_epoch(tmp_path):
    """2 gloo processes; SIGTERM to rank 1 only after step 8 (epoch 1, 6 steps an epoch): both stop after that
    step, one note, status 143; resumed in one process, the epoch goes on with the batches not yet trained."""
    run_dir, stop_at = tmp_path / "ddp", PER_EPOCH // 2 + 2
    victim = train_script(run_dir, "trainer=ddp_cpu", f"+callbacks.record.kill_at_step={stop_at}",
                          f"+callbacks.record.signal={int(signal.SIGTERM)}", "+callbacks.record.rank=1")
    out = victim.communicate(timeout=600)[0]
    assert victim.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "Traceback" not in out and out.count("interrupted:") == 1
    saved = checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == stop_at
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0] == {
        "epoch": 1, "position": stop_at - PER_EPOCH // 2, "world_size": 2, "done": 0}
    before = records(run_dir)
    assert sorted(r[1] for r in before) == sorted([*range(1, stop_at + 1)] * 2)  # both ranks, the same steps

    train(compose_config("train", [*RUN, "resume=true"], run_dir))
    after = records(run_dir)[len(before):]
    assert [r[1] for r in after] == list(range(stop_at + 1, stop_at + 1 + PER_EPOCH - 2 * (stop_at - PER_EPOCH // 2)))
    everything = {i for e, _, ids in before if e == 0 for i in ids}
    epoch1 = [i for e, _, ids in before + after if e == 1 for i in ids]
    assert sorted(epoch1) == sorted(everything)  # every sentence of the epoch once: none lost, none repeated


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
    assert state == {"epoch": 3, "position": 2, "world_size": 1, "done": 0}

    second = make()
    second.load_state_dict(state)
    rest = iter(second)  # made before set_epoch, as Lightning does when it restores
    second.batch_sampler.set_epoch(3)
    assert head + list(rest) == epoch
    assert second.state_dict() == {"epoch": 3, "position": len(epoch), "world_size": 1, "done": 1}
    second.batch_sampler.set_epoch(4)
    assert list(second) != epoch and sorted(sum(list(second), [])) == list(range(len(lens)))

    done = make()
    done.load_state_dict({"epoch": 3, "position": len(epoch)})  # saved at the end of epoch 3 (an older checkpoint)
    assert done.batch_sampler.epoch == 4 and len(list(done)) == len(done.batch_sampler)


def epoch_batches(lens: list[int], world: int, epoch: int = 3) -> list[ResumableLoader]:
    """One ResumableLoader per rank of `world` over the same sentences, at `epoch`."""
    loaders = [ResumableLoader(list(range(len(lens))), collate_fn=list,
                               batch_sampler=TokenBatchSampler(lens, lens, 20, shuffle=True, seed=7, rank=r,
                                                               world_size=world)) for r in range(world)]
    for loader in loaders:
        loader.batch_sampler.set_epoch(epoch)
    return loaders


@pytest.mark.parametrize(("before", "after", "repeated"), [(2, 1, 0), (4, 2, 0), (1, 2, 1), (2, 3, 0), (3, 2, 1)])
def test_resuming_mid_epoch_with_another_number_of_ranks_continues_the_epoch(before, after, repeated):
    """Steps taken on `before` ranks, the rest of the epoch on `after` ranks: no batch of the epoch skipped, at
    most after - 1 trained twice (none when `after` divides the batches taken), equal steps on every rank."""
    lens = [(i * 7) % 11 + 2 for i in range(60)]
    [whole] = epoch_batches(lens, 1)
    epoch = list(whole)
    steps = 3
    taken = []
    for loader in epoch_batches(lens, before):
        it = iter(loader)
        taken += [next(it) for _ in range(steps)]
    state = loader.state_dict()
    assert state == {"epoch": 3, "position": steps, "world_size": before, "done": 0}
    rest = []
    for loader in epoch_batches(lens, after, epoch=0):
        loader.load_state_dict(state)
        it = iter(loader)  # made before set_epoch, as Lightning does when it restores
        loader.batch_sampler.set_epoch(3)
        rest.append(list(it))
    # Rank r continues with the epoch's batches start * after + r, + after, ... (repeats at the end pad the
    # ranks to equal steps, as in any epoch), so the batches after the first `steps * before` are all trained.
    n, start = len(epoch), steps * before // after
    assert steps * before - start * after == repeated  # batches trained a second time
    for r, got in enumerate(rest):
        assert got == [epoch[i % n] for i in range(start * after + r, -(-n // after) * after, after)]
    assert sorted(map(tuple, taken)) == sorted(map(tuple, epoch[: steps * before]))


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

    (folder / "in.en").write_text("A dog runs.\nTwo cats sleep.\n")  # the next translation to that name tidies up
    assert run_script("translate", f"model_file={folder / 'model.pt'}", f"input={folder / 'in.en'}",
                      f"output={folder / 'out.de'}") == 0
    assert len((folder / "out.de").read_text(encoding="utf-8").splitlines()) == 2
    assert not list(folder.glob(".out.de*"))


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


def one_error_line(err: str) -> str:
    """The `error: ...` line of a failed script's stderr, checking it is the only one and no traceback came."""
    assert "Traceback" not in err, err[-3000:]
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    return line


QUICK = [*TINY, "data.train_limit=300", "data.eval_limit=60", "decoding.beam_size=1", "decoding.max_len=20",
         "++callbacks.throughput=null"]


@pytest.mark.slow
def test_a_run_stopped_before_its_first_validation_ends_with_its_last_weights(tmp_path, capsys):
    status = run_script("train", f"hydra.run.dir={tmp_path}", f"data.source.path={MULTI30K}", *QUICK,
                        "trainer.max_steps=3", "average_checkpoints=0", "callbacks.model_checkpoint=null")
    out = capsys.readouterr()
    assert status == 0, out.err[-3000:]
    assert "test BLEU" in out.out and "Traceback" not in out.err
    assert not list(tmp_path.glob("checkpoints/*.ckpt"))  # no checkpoint at all: the model file is the last weights
    model, tokenizer, _ = load_model(tmp_path / "model.pt")
    assert len((tmp_path / "test.hyp").read_text(encoding="utf-8").splitlines()) == 60
    assert tokenizer.state() == Tokenizer.load(tmp_path / "tokenizer").state()


def test_byte_pieces_of_line_breaks_never_split_a_translation():
    tokenizer = tiny_tokenizer(500)
    pieces = {name: tokenizer.tgt.piece_to_id(name) for name in ("<0x0A>", "<0x0D>", "<0x0B>", "<0x0C>")}
    assert tokenizer.tgt.decode([pieces["<0x0A>"]]) == "\n"  # byte fallback spells line breaks
    dog, runs = tokenizer.encode_tgt(["Ein Hund", "rennt."])
    ids = [[*dog, pieces["<0x0A>"], *runs], [pieces["<0x0D>"], pieces["<0x0A>"], *dog, pieces["<0x0B>"], pieces["<0x0C>"]],
           [*dog, *tokenizer.encode_tgt(["\u2028"])[0], *runs]]
    texts = tokenizer.decode_tgt(ids)
    assert texts[0].split() == ["Ein", "Hund", "rennt."]
    assert texts[1].strip() == "Ein Hund"
    assert all(len(t.splitlines()) == 1 and "\n" not in t and "\r" not in t for t in texts)
    assert tokenizer.tgt.decode(ids[0]) == "Ein Hund\n rennt."  # the ids themselves are left as searched


def test_resume_from_a_damaged_checkpoint_names_it(tmp_path, capsys):
    tiny_tokenizer(500).save(tmp_path / "tokenizer")
    (tmp_path / "checkpoints").mkdir()
    good = tmp_path / "good.ckpt"
    atomic_save({"w": torch.ones(1000)}, good)
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(good.read_bytes()[:-300])  # a truncated file
    status = run_script("train", f"hydra.run.dir={tmp_path}", f"data.source.path={MULTI30K}", *QUICK, "resume=true")
    err = capsys.readouterr().err
    assert status == 2
    assert str(tmp_path / "checkpoints" / "last.ckpt") in one_error_line(err)


def lock_holder(folder: Path) -> subprocess.Popen:
    """Another process holding the run lock of `folder` until killed (it prints a line once it holds it)."""
    code = ("import sys, time; from pathlib import Path; from seq2seq.training.lock import RunLock\n"
            "with RunLock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.slow
def test_a_second_run_on_a_busy_folder_is_refused_and_a_killed_holder_frees_it(tmp_path, capsys):
    holder = lock_holder(tmp_path)
    try:
        status = run_script("train", f"hydra.run.dir={tmp_path}", f"data.source.path={MULTI30K}", *QUICK)
        line = one_error_line(capsys.readouterr().err)
        assert status == 2 and str(tmp_path) in line and f"pid {holder.pid}" in line
        assert not (tmp_path / "tokenizer").exists()  # refused before any work
    finally:
        holder.send_signal(signal.SIGKILL)  # as a killed run leaves it: a lock file, no lock
        holder.wait()
    assert (tmp_path / ".lock").exists()
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())


def test_ranks_above_zero_stop_waiting_when_rank_zero_is_gone(tmp_path, monkeypatch):
    cfg = compose_config("train", [*TINY, "data.train_limit=300"], tmp_path)
    monkeypatch.setattr(train_mod, "RANK0_SILENT_S", 1.0)
    monkeypatch.setattr(lock_mod, "HEARTBEAT_S", 0.1)
    folder = tmp_path / "tokenizer"
    started = time.monotonic()
    with pytest.raises(RunError, match="rank 1: rank 0 is gone"):
        shared_tokenizer(instantiate(cfg.data), folder, 1)  # nobody holds the folder
    assert time.monotonic() - started < 10
    with RunLock(tmp_path):  # a live rank 0 (its heartbeat beats) is waited for
        got = {}
        rank1 = threading.Thread(target=lambda: got.update(t=shared_tokenizer(instantiate(cfg.data), folder, 1)))
        rank1.start()
        time.sleep(2.5)
        assert rank1.is_alive()
        tokenizer = shared_tokenizer(instantiate(cfg.data), folder, 0)
        rank1.join(timeout=30)
    assert got["t"].state() == tokenizer.state()


def limited(size: int):
    """preexec_fn for a child process whose files cannot grow beyond `size` bytes, as on a full disk (EFBIG)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
    return limit


def script(name: str, *overrides: str, limit: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *overrides], cwd=ROOT, env=script_env(),
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=limited(limit) if limit else None)


@pytest.mark.slow
def test_a_report_that_cannot_be_written_leaves_the_old_one(tmp_path):
    refs = read_lines(MULTI30K / "val.de.gz")[:200]
    (tmp_path / "ref.de").write_text("".join(r + "\n" for r in refs), encoding="utf-8")
    (tmp_path / "hyp.de").write_text("".join(" ".join(r.split()[::-1]) + "\n" for r in refs), encoding="utf-8")
    report = tmp_path / "report.md"
    report.write_text("the old report\n")
    done = script("evaluate", f"hyp={tmp_path / 'hyp.de'}", f"ref={tmp_path / 'ref.de'}", f"report={report}",
                  limit=1500)
    assert done.returncode == 2 and str(report) in one_error_line(done.stderr)
    assert report.read_text() == "the old report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hyp.de", "ref.de", "report.md"]


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["cpu", "ddp_cpu"])
def test_a_full_disk_ends_training_with_one_error_line(tmp_path, trainer):
    """Checkpoints cannot be written (files are capped below their size): one error line naming the file, exit 2,
    no traceback; under DDP the other rank does not wait for the process group's timeout."""
    tiny_tokenizer(500).save(tmp_path / "tokenizer")  # the tokenizer fits, checkpoints do not
    started = time.monotonic()
    done = script("train", f"trainer={trainer}", f"hydra.run.dir={tmp_path}", f"data.source.path={MULTI30K}", *QUICK,
                  "trainer.max_epochs=1", limit=500_000)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "checkpoints" in one_error_line(done.stderr) and "File too large" in done.stderr
    assert time.monotonic() - started < 240
    assert not list(tmp_path.glob("checkpoints/*")) and not (tmp_path / "model.pt").exists()


def test_a_resumed_run_keeps_its_metrics_history(tmp_path):
    metrics = tmp_path / "logs" / "metrics.csv"
    first = HistoryCSVLogger(tmp_path, name="logs", version="")
    first.log_metrics({"train/loss": 2.0}, step=1)
    first.save()
    resumed = HistoryCSVLogger(tmp_path, name="logs", version="", append=True)  # what resume=true builds
    resumed.log_metrics({"train/loss": 1.5, "val/bleu": 3.0}, step=2)
    resumed.save()
    assert read_metrics(metrics) == {"train/loss": ([1.0, 2.0], [2.0, 1.5]), "val/bleu": ([2.0], [3.0])}
    fresh = HistoryCSVLogger(tmp_path, name="logs", version="")  # a new run in the folder starts afresh
    fresh.log_metrics({"train/loss": 9.0}, step=1)
    fresh.save()
    assert read_metrics(metrics) == {"train/loss": ([1.0], [9.0])}
