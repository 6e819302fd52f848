"""Fault injection: train and translate, break them at seeded random points, resume or rerun, and check that
nothing was lost.

    python -m benchmarks.faults [--rounds 3] [--seed 0] [--jobs 2] [--minutes 40] [--work DIR]

Training runs the tests' tiny model (2 epochs of 300 Multi30k pairs, 24 steps, last.ckpt every 3 steps);
translation translates 1,000 validation sentences with the model file of an uninterrupted run. Every round
injects each fault once, at a point drawn from the seeded generator:

  train      SIGINT, SIGTERM or SIGKILL after a random step, then resume=true;
             a write failure (the process's file size capped with prlimit after a random step: the next
             checkpoint cannot be written, as on a full disk), then resume=true;
             a checkpoint truncated at a random byte after a SIGKILL: resume=true must refuse it, then a rerun;
             a second run on the folder of a run in progress (paused after a random step)
  translate  SIGINT, SIGTERM or SIGKILL after a random delay, a write failure at a random delay (over an older
             output of the same name), then a rerun

  service    SIGKILL of each kind of the server's processes (inference worker, HTTP process, queue process,
             main process) and SIGTERM of the main one, at a random moment under load from several async
             clients whose requests mix valid, oversized (a gigabyte announced) and malformed bodies

and checks: final weights (last.ckpt) and model file equal the uninterrupted run's; every output file
(model.pt, test.hyp, checkpoints, translations) is complete or absent, never partial, and no temporary file is
left after the rerun; each failure ends with exit status 2 and one `error:` line on stderr, no traceback; a
SIGINT/SIGTERM of training ends with 128 + signal and one `interrupted:` line. It prints the counts: faults
injected, runs resumed, outputs checked, lines lost (and every check that failed).

For the service: requests sent, answered 200, answered 4xx or 5xx, refused (sent after the fault and refused
or closed without a status line: the port was closing), reset (sent before the fault, then closed without a
status line: those a killed HTTP process held), hung (no
status line within the service's timeout + 5 s: must be 0); the exit status (SIGTERM: 0, no request
reset; a killed child: 1 and one `error:` line); that every process of the service ended within
SERVICE_ENDS_S of the fault; and that a new server on the same port was serving within SERVING_AGAIN_S,
as a supervisor would start it.

    python -m benchmarks.faults --kinds service --model runs/X/model.pt [--rounds 2] [--clients 8]
"""
import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import lightning as L
import torch

from benchmarks.loadtest import request, service_processes, start_server, stop_server

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
STEPS, PER_EPOCH, EVERY = 24, 12, 3  # training steps, steps per epoch, steps between last.ckpt saves
FULL_DISK_BYTES = 500_000  # a checkpoint (1.1 MB) or model file (0.7 MB) does not fit; logs and curves do
TRAIN = ["model.input_size=32", "model.hidden_size=32", "data.tokenizer.vocab_size=500", "data.max_tokens=1200",
         "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "model.dropout=0.0",
         "data.train_limit=300", "data.eval_limit=60", "trainer.max_epochs=2", "decoding.beam_size=1",
         "decoding.max_len=20", "++callbacks.throughput=null",
         "+callbacks.step_checkpoint._target_=lightning.pytorch.callbacks.ModelCheckpoint",
         "+callbacks.step_checkpoint.dirpath=${paths.run_dir}/checkpoints",
         f"+callbacks.step_checkpoint.every_n_train_steps={EVERY}", "+callbacks.step_checkpoint.save_top_k=0",
         "+callbacks.step_checkpoint.save_last=true", "+callbacks.step_checkpoint.enable_version_counter=false",
         "+callbacks.steps._target_=benchmarks.faults.StepFile", "+callbacks.steps.path=${paths.run_dir}/step"]
TRANSLATE_LINES = 1000
SERVE = ["threads=1", "max_lines=8", "max_chars=200", "timeout=20", "grace_period=10"]  # the service under faults
TIMEOUT_S, GRACE_S = 20, 10  # its timeout and grace_period: a request waiting longer than TIMEOUT_S + 5 s hung
SERVICE_ENDS_S, SERVING_AGAIN_S = GRACE_S + 10, 60  # the stated times: every process gone; a new server up
SERVICE_KINDS = {"inference worker": signal.SIGKILL, "HTTP": signal.SIGKILL, "queue process": signal.SIGKILL,
                 "main": signal.SIGKILL, "main ": signal.SIGTERM}  # (the second "main" gets SIGTERM)


class StepFile(L.Callback):
    """Writes the global step to `path` after every training batch, for the injector to watch."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        self.path.write_text(str(trainer.global_step))


@dataclass
class Tally:
    faults: Counter = field(default_factory=Counter)
    resumed: int = 0
    reruns: int = 0
    outputs: int = 0
    lines_lost: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, ok: bool, what: str) -> bool:
        if not ok:
            with self.lock:
                self.failures.append(what)
        return ok


class Child:
    """A script run in a child process, its stdout and stderr in files beside `log`."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1"}
        self.out, self.err = log.with_name(log.name + ".out"), log.with_name(log.name + ".err")
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        self.started = time.monotonic()

    def wait(self, timeout: float = 600) -> tuple[int, str]:
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        return status, self.err.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def cap_files(self, size: int) -> None:
        """From now on no file of the process may grow beyond `size` bytes (writes fail with EFBIG)."""
        if self.process.poll() is None:
            resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))


def train(run_dir: Path, *extra: str, log: str = "train") -> Child:
    return Child([sys.executable, "scripts/train.py", f"hydra.run.dir={run_dir}", f"data.source.path={MULTI30K}",
                  *TRAIN, *extra], run_dir.parent / f"{run_dir.name}.{log}")


def translate(model: Path, source: Path, output: Path, log: Path) -> Child:
    return Child([sys.executable, "scripts/translate.py", f"model_file={model}", f"input={source}",
                  f"output={output}", "beam_size=1"], log)


def wait_for_step(child: Child, run_dir: Path, step: int, timeout: float = 600) -> bool:
    """Until the run has trained `step` steps (True), or ended first (False)."""
    deadline = time.monotonic() + timeout
    while child.process.poll() is None and time.monotonic() < deadline:
        try:
            if int((run_dir / "step").read_text() or 0) >= step:
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return False


def one_line(err: str, prefix: str) -> bool:
    return "Traceback" not in err and sum(line.startswith(prefix) for line in err.splitlines()) == 1


def weights(path: Path) -> dict[str, torch.Tensor]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    return blob["state_dict"]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.allclose(wa[k].float(), wb[k].float(), rtol=1e-4, atol=1e-5)
                                          for k in wa)


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if re.search(r"\.tmp\d+$", p.name)]


class Injector:
    def __init__(self, work: Path, tally: Tally) -> None:
        self.work, self.tally = work, tally
        self.reference = work / "reference"

    def prepare(self) -> None:
        """The uninterrupted run, its translation of the validation sentences, and the input file."""
        lines = subprocess.run(["zcat", str(MULTI30K / "val.en.gz")], capture_output=True, text=True,
                               check=True).stdout.splitlines()[:TRANSLATE_LINES]
        (self.work / "input.en").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        status, err = train(self.reference).wait()
        assert status == 0, err[-3000:]
        started = time.monotonic()
        status, err = translate(self.reference / "model.pt", self.work / "input.en", self.work / "reference.de",
                                self.work / "reference.translate").wait()
        assert status == 0, err[-3000:]
        self.translate_s = time.monotonic() - started
        self.expected = (self.work / "reference.de").read_text(encoding="utf-8").splitlines()
        self.test_hyp = (self.reference / "test.hyp").read_text(encoding="utf-8").splitlines()

    def folder(self, name: str) -> Path:
        run_dir = self.work / name
        shutil.copytree(self.reference / "tokenizer", run_dir / "tokenizer")  # all runs encode alike
        return run_dir

    # ---- checks ----

    def check_lines(self, path: Path, expected: list[str], what: str, may_be_absent: bool) -> None:
        """A complete output equals `expected`; an absent one is fine only when may_be_absent."""
        with self.tally.lock:
            self.tally.outputs += 1
        if not path.exists():
            self.tally.check(may_be_absent, f"{what}: {path.name} missing")
            if not may_be_absent:
                with self.tally.lock:
                    self.tally.lines_lost += len(expected)
            return
        got = path.read_text(encoding="utf-8").splitlines()
        lost = sum(1 for i, line in enumerate(expected) if i >= len(got) or got[i] != line)
        with self.tally.lock:
            self.tally.lines_lost += lost
        self.tally.check(lost == 0 and len(got) == len(expected), f"{what}: {path.name} {len(got)} lines, {lost} lost")

    def check_finished_run(self, run_dir: Path, what: str) -> None:
        """A run that ended well: its weights, model file and test hypotheses equal the uninterrupted run's."""
        ref = self.reference
        self.tally.check(same_weights(run_dir / "checkpoints" / "last.ckpt", ref / "checkpoints" / "last.ckpt"),
                         f"{what}: final weights differ from the uninterrupted run's")
        self.tally.check(same_weights(run_dir / "model.pt", ref / "model.pt"), f"{what}: model file differs")
        with self.tally.lock:
            self.tally.outputs += 2
        self.check_lines(run_dir / "test.hyp", self.test_hyp, what, may_be_absent=False)
        self.tally.check(not temporaries(run_dir), f"{what}: temporary files left: {temporaries(run_dir)}")

    def check_partial_run(self, run_dir: Path, what: str) -> None:
        """A run that stopped early: whatever files it left are whole (each checkpoint loads)."""
        for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
            with self.tally.lock:
                self.tally.outputs += 1
            try:
                weights(ckpt)
            except Exception as e:  # a partial file
                self.tally.check(False, f"{what}: {ckpt.name} does not load: {e}")
        self.tally.check(not (run_dir / "model.pt").exists() and not (run_dir / "test.hyp").exists(),
                         f"{what}: a model file or test.hyp from a run that did not finish")

    def resume(self, run_dir: Path, what: str) -> None:
        """Continue the run (resume=true when it left a checkpoint, else run it again) and check the result."""
        resumable = (run_dir / "checkpoints" / "last.ckpt").exists()
        status, err = train(run_dir, *(["resume=true"] if resumable else []), log="resume").wait()
        with self.tally.lock:
            if resumable:
                self.tally.resumed += 1
            else:
                self.tally.reruns += 1
        if self.tally.check(status == 0, f"{what}: the resumed run failed ({status}): {err[-500:]}"):
            self.check_finished_run(run_dir, what)

    # ---- training faults ----

    def signal_training(self, name: str, signum: int, step: int) -> str:
        run_dir = self.folder(name)
        child = train(run_dir)
        reached = wait_for_step(child, run_dir, step)
        child.signal(signum)
        status, err = child.wait()
        what = f"{name}: {signal.Signals(signum).name} after step {step}"
        self.tally.check(reached, f"{what}: the run ended before that step")
        if signum == signal.SIGKILL:
            self.tally.check(status == -signal.SIGKILL, f"{what}: exit status {status}")
        else:
            self.tally.check(status == 128 + signum and one_line(err, "interrupted:"),
                             f"{what}: exit status {status}, stderr {err[-800:]}")
        self.check_partial_run(run_dir, what)
        self.resume(run_dir, what)
        return f"{what}: exit {status}"

    def write_failure(self, name: str, step: int) -> str:
        run_dir = self.folder(name)
        child = train(run_dir)
        wait_for_step(child, run_dir, step)
        child.cap_files(FULL_DISK_BYTES)
        status, err = child.wait()
        what = f"{name}: files capped at {FULL_DISK_BYTES} bytes after step {step}"
        self.tally.check(status == 2 and one_line(err, "error:"), f"{what}: exit status {status}, stderr {err[-800:]}")
        self.check_partial_run(run_dir, what)
        self.resume(run_dir, what)
        return f"{what}: exit {status}"

    def corrupt_checkpoint(self, name: str, step: int, rng: random.Random) -> str:
        run_dir = self.folder(name)
        child = train(run_dir)
        wait_for_step(child, run_dir, step)
        child.signal(signal.SIGKILL)
        child.wait()
        last = run_dir / "checkpoints" / "last.ckpt"
        blob = last.read_bytes()
        cut = rng.randrange(1, len(blob))
        last.write_bytes(blob[:cut])
        what = f"{name}: last.ckpt of step {step - step % EVERY} truncated at byte {cut} of {len(blob)}"
        status, err = train(run_dir, "resume=true", log="refused").wait()
        self.tally.check(status == 2 and one_line(err, "error:") and str(last) in err,
                         f"{what}: resume gave exit status {status}, stderr {err[-800:]}")
        shutil.rmtree(run_dir / "checkpoints")  # what a user does then: start the run again
        self.resume(run_dir, what)
        return f"{what}: resume refused, exit {status}"

    def second_run(self, name: str, step: int) -> str:
        run_dir = self.folder(name)
        first = train(run_dir)
        wait_for_step(first, run_dir, step)
        first.signal(signal.SIGSTOP)  # paused, so that it still runs when the second one gets going
        status, err = train(run_dir, log="second").wait()
        first.signal(signal.SIGCONT)
        what = f"{name}: a second run on the folder after step {step}"
        self.tally.check(status == 2 and one_line(err, "error:") and f"pid {first.process.pid}" in err,
                         f"{what}: exit status {status}, stderr {err[-800:]}")
        first_status, first_err = first.wait()
        if self.tally.check(first_status == 0, f"{what}: the first run failed: {first_err[-500:]}"):
            self.check_finished_run(run_dir, what)
        return f"{what}: refused, exit {status}; the first run went on"

    # ---- translation faults ----

    def signal_translation(self, name: str, signum: int, delay: float) -> str:
        folder = self.work / name
        folder.mkdir()
        output = folder / "out.de"
        child = translate(self.reference / "model.pt", self.work / "input.en", output, folder / "translate")
        time.sleep(delay)
        child.signal(signum)
        status, err = child.wait()
        what = f"{name}: translate, {signal.Signals(signum).name} after {delay:.1f} s"
        self.check_lines(output, self.expected, f"{what} (as left)", may_be_absent=True)
        return self.rerun_translation(folder, output, what, f"exit {status}")

    def translation_write_failure(self, name: str, delay: float) -> str:
        folder = self.work / name
        folder.mkdir()
        output = folder / "out.de"
        output.write_text("an older output\n")
        child = translate(self.reference / "model.pt", self.work / "input.en", output, folder / "translate")
        time.sleep(delay)
        child.cap_files(10_000)  # the translation takes ~40 kB
        status, err = child.wait()
        what = f"{name}: translate, files capped at 10000 bytes after {delay:.1f} s"
        finished_first = status == 0  # it may have written the output before the cap
        self.tally.check(finished_first or (status == 2 and one_line(err, "error:")),
                         f"{what}: exit status {status}, stderr {err[-800:]}")
        if not finished_first:
            self.tally.check(output.read_text() == "an older output\n", f"{what}: the older output was not kept")
        return self.rerun_translation(folder, output, what, f"exit {status}")

    def rerun_translation(self, folder: Path, output: Path, what: str, how: str) -> str:
        status, err = translate(self.reference / "model.pt", self.work / "input.en", output, folder / "rerun").wait()
        with self.tally.lock:
            self.tally.reruns += 1
        self.tally.check(status == 0, f"{what}: the rerun failed: {err[-500:]}")
        self.check_lines(output, self.expected, what, may_be_absent=False)
        self.tally.check(not temporaries(folder), f"{what}: temporary files left: {temporaries(folder)}")
        return f"{what}: {how}; rerun complete"


def service_bodies(rng: random.Random, lines: list[str]) -> tuple[str, bytes, dict]:
    """(what, body, extra headers) of one request: mostly valid, some oversized, some malformed."""
    roll = rng.random()
    if roll < 0.1:
        return "oversized", b'{"text": ["' + b"x" * 100, {"Content-Length": "1000000000"}
    if roll < 0.2:
        return "malformed", rng.choice([b'{"text": ["A dog', b'["A dog."]', b'{"text": "A dog."}', b'\xff\xfe{}',
                                        b'{"text": ["A dog."], "beam_size": 0}', b'{"text": ["x"], "extra": 1}',
                                        json.dumps({"text": ["A dog."] * 9}).encode()]), {}
    text = rng.sample(lines, rng.randint(1, 8))
    return "valid", json.dumps({"text": text, "beam_size": rng.randint(1, 5)}).encode(), {}


async def service_load(port: int, lines: list[str], clients: int, rng: random.Random, stop: asyncio.Event,
                       fault: dict) -> Counter:
    """`clients` async clients, each sending its next request when the previous one is answered, until `stop`.
    A connection closed without a status line counts as reset when its request was sent before the fault
    (fault["at"]), as refused when after (the port was closing: no server can answer those)."""
    counts: Counter = Counter()

    async def client(rng: random.Random) -> None:
        while not stop.is_set():
            _, body, headers = service_bodies(rng, lines)
            counts["sent"] += 1
            sent = time.monotonic()
            try:
                status, _ = await request(port, "/translate", body, headers, timeout=TIMEOUT_S + 5)
                counts["200" if status == 200 else "4xx" if status < 500 else "5xx"] += 1
            except TimeoutError:
                counts["hung"] += 1
            except ConnectionRefusedError:
                counts["refused"] += 1
                await asyncio.sleep(0.05)  # a closed port refuses at once: no need to spin on it
            except OSError:  # accepted, then closed before a status line
                counts["reset" if fault.get("at") is None or sent < fault["at"] else "refused"] += 1
    await asyncio.gather(*(client(random.Random(rng.random())) for _ in range(clients)))
    return counts


def alive(pids: list[int]) -> list[int]:
    """Those of the processes still running (a zombie has ended)."""
    running = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
                running.append(pid)
        except OSError:
            pass
    return running


class ServiceInjector:
    """Each fault on a fresh server of `model`, under load, then a new server on the same port."""

    def __init__(self, work: Path, tally: Tally, model: Path, clients: int) -> None:
        self.work, self.tally, self.model, self.clients = work, tally, model, clients
        self.lines = subprocess.run(["zcat", str(MULTI30K / "val.en.gz")], capture_output=True, text=True,
                                    check=True).stdout.splitlines()[:200]
        self.rows: list[dict] = []

    def fault(self, name: str, kind: str, delay: float, rng: random.Random) -> str:
        signum, target = SERVICE_KINDS[kind], kind.strip()
        log = self.work / f"{name}.serve"
        process, url = start_server([f"model_file={self.model}", *SERVE], log, threads=1)
        port = int(url.rsplit(":", 1)[1])
        kinds = service_processes(process.pid, port)
        pids = [p for ps in kinds.values() for p in ps]
        row = {"fault": f"{signal.Signals(signum).name} {target}", "at_s": delay}

        async def campaign() -> Counter:
            stop, moment = asyncio.Event(), {}
            load = asyncio.ensure_future(service_load(port, self.lines, self.clients, rng, stop, moment))
            await asyncio.sleep(delay)
            os.kill(kinds[target][0], signum)
            injected = moment["at"] = time.monotonic()
            while alive(pids) and time.monotonic() - injected < SERVICE_ENDS_S:
                await asyncio.sleep(0.05)
            row["ended_s"] = time.monotonic() - injected if not alive(pids) else None
            await asyncio.sleep(0.5)  # a few requests at the closed port
            stop.set()
            return await load
        row |= asyncio.run(campaign())
        status = process.wait(timeout=5) if row["ended_s"] is not None else stop_server(process)
        text = log.read_text(errors="replace")
        errors = sum(line.startswith("error:") for line in text.splitlines())
        row |= {"exit": status, "error_lines": errors, "tracebacks": text.count("Traceback")}
        what = f"{name}: {row['fault']} after {delay:.1f} s"
        expected = {signal.SIGTERM: 0, signal.SIGKILL: -signal.SIGKILL if target == "main" else 1}[signum]
        self.tally.check(row.get("hung", 0) == 0, f"{what}: {row.get('hung')} requests hung")
        self.tally.check(signum != signal.SIGTERM or row.get("reset", 0) == 0,
                         f"{what}: {row.get('reset')} requests dropped by the drain")
        self.tally.check(status == expected, f"{what}: exit status {status}, expected {expected}")
        self.tally.check(errors == (1 if expected == 1 else 0), f"{what}: {errors} error: lines")
        self.tally.check(row["ended_s"] is not None, f"{what}: processes left {SERVICE_ENDS_S} s after: {alive(pids)}")
        started = time.monotonic()
        try:
            stop_server(start_server([f"model_file={self.model}", *SERVE], self.work / f"{name}.again",
                                     threads=1, wait=SERVING_AGAIN_S, port=port)[0])
            row["again_s"] = time.monotonic() - started
        except RuntimeError as e:
            row["again_s"] = None
            self.tally.check(False, f"{what}: no new server on port {port}: {str(e)[-300:]}")
        with self.tally.lock:
            self.rows.append(row)
        return f"{what}: " + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                                       if k not in ("fault", "at_s"))

    def table(self) -> str:
        keys = ["sent", "200", "4xx", "5xx", "refused", "reset", "hung"]
        lines = [f"{'fault':24s} {'at s':>5s} " + " ".join(f"{k:>8s}" for k in keys) +
                 f" {'exit':>5s} {'error:':>6s} {'ended s':>8s} {'again s':>8s}"]
        for r in self.rows:
            lines.append(f"{r['fault']:24s} {r['at_s']:5.1f} " + " ".join(f"{r.get(k, 0):8d}" for k in keys) +
                         f" {r['exit']:5d} {r['error_lines']:6d} {_seconds(r['ended_s']):>8s} {_seconds(r['again_s']):>8s}")
        totals = Counter()
        for r in self.rows:
            totals.update({k: r.get(k, 0) for k in keys})
        lines.append(f"{'total':24s} {'':5s} " + " ".join(f"{totals[k]:8d}" for k in keys))
        return "\n".join(lines)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def service_plan(injector: ServiceInjector, rounds: int, rng: random.Random) -> list[tuple[str, Callable[[], str]]]:
    """Every service fault once per round, 1 to 4 s into the load."""
    return [(f"service {signal.Signals(SERVICE_KINDS[kind]).name} {kind.strip()}",
             partial(injector.fault, f"r{r}-serve-{kind.strip().replace(' ', '-')}-{SERVICE_KINDS[kind]}", kind,
                     rng.uniform(1, 4), random.Random(rng.random())))
            for r in range(1, rounds + 1) for kind in SERVICE_KINDS]


def plan(injector: Injector, rounds: int, rng: random.Random) -> list[tuple[str, Callable[[], str]]]:
    """Every fault once per round at a random point: (kind, action), the points drawn in this order."""
    i, t, jobs = injector, injector.translate_s, []
    for r in range(1, rounds + 1):
        step = lambda low=1, high=STEPS - 2: rng.randint(low, high)  # noqa: E731  (after this step)
        delay = lambda: rng.uniform(0.2 * t, 0.9 * t)  # noqa: E731  (seconds after a translation's start)
        jobs += [
            ("train SIGINT", partial(i.signal_training, f"r{r}-sigint", signal.SIGINT, step())),
            ("train SIGTERM", partial(i.signal_training, f"r{r}-sigterm", signal.SIGTERM, step())),
            ("train SIGKILL", partial(i.signal_training, f"r{r}-sigkill", signal.SIGKILL, step())),
            ("train write failure", partial(i.write_failure, f"r{r}-full", step(high=STEPS - 4))),
            ("corrupted checkpoint", partial(i.corrupt_checkpoint, f"r{r}-corrupt", step(low=EVERY + 1),
                                             random.Random(rng.random()))),
            ("second run on the folder", partial(i.second_run, f"r{r}-second", step())),
            ("translate SIGINT", partial(i.signal_translation, f"r{r}-tr-sigint", signal.SIGINT, delay())),
            ("translate SIGTERM", partial(i.signal_translation, f"r{r}-tr-sigterm", signal.SIGTERM, delay())),
            ("translate SIGKILL", partial(i.signal_translation, f"r{r}-tr-sigkill", signal.SIGKILL, delay())),
            ("translate write failure", partial(i.translation_write_failure, f"r{r}-tr-full", delay())),
        ]
    return jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="times each fault is injected")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="faults injected at the same time")
    parser.add_argument("--minutes", type=float, default=40, help="no new fault is started after this time")
    parser.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a new temporary one)")
    parser.add_argument("--kinds", nargs="+", choices=["train", "translate", "service"],
                        default=["train", "translate", "service"], help="which faults")
    parser.add_argument("--model", type=Path, default=None,
                        help="model file of the service's faults (default: the uninterrupted run's)")
    parser.add_argument("--clients", type=int, default=8, help="async clients loading the service")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="faults-"))
    work.mkdir(parents=True, exist_ok=True)
    started, deadline = time.monotonic(), time.monotonic() + 60 * args.minutes
    tally = Tally()
    injector = Injector(work, tally)
    rng = random.Random(args.seed)
    jobs = []
    if {"train", "translate"} & set(args.kinds) or args.model is None:
        injector.prepare()
        print(f"uninterrupted run and translation ready in {time.monotonic() - started:.0f} s ({work})", flush=True)
        jobs = [(kind, action) for kind, action in plan(injector, args.rounds, rng)
                if ("translate" if kind.startswith("translate") else "train") in args.kinds]
    service = ServiceInjector(work, tally, args.model or injector.reference / "model.pt", args.clients)
    service_jobs = service_plan(service, args.rounds, rng) if "service" in args.kinds else []

    def run(kind: str, action: Callable[[], str]) -> None:
        if time.monotonic() > deadline:
            return
        with tally.lock:
            tally.faults[kind] += 1
        try:
            print(action(), flush=True)
        except Exception as e:  # a broken check is a failure, not the end of the campaign
            tally.check(False, f"{kind}: {type(e).__name__}: {e}")

    with ThreadPoolExecutor(args.jobs) as pool:
        for future in [pool.submit(run, kind, action) for kind, action in jobs]:
            future.result()
    for kind, action in service_jobs:  # one at a time: each measures how soon the service is back
        run(kind, action)
    print()
    if service.rows:
        print(f"service ({args.clients} async clients in this process; timeout {TIMEOUT_S} s, grace_period {GRACE_S} s; "
              f"hung: no status line within {TIMEOUT_S + 5} s; ended: every process gone, at most {SERVICE_ENDS_S} s; "
              f"again: a new server on the port answering /health 200, at most {SERVING_AGAIN_S} s)")
        print(service.table())
    print(f"faults injected: {sum(tally.faults.values())} ({', '.join(f'{k} {n}' for k, n in tally.faults.items())})")
    print(f"runs resumed: {tally.resumed}, reruns: {tally.reruns}")
    print(f"outputs checked: {tally.outputs}")
    print(f"lines lost: {tally.lines_lost}")
    print(f"failed checks: {len(tally.failures)}")
    for failure in tally.failures:
        print(f"  {failure}")
    print(f"time: {(time.monotonic() - started) / 60:.1f} min (seed {args.seed}, {args.jobs} at a time)")
    sys.exit(1 if tally.failures else 0)


if __name__ == "__main__":
    main()
