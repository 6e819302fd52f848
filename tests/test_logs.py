"""What a run prints: each log line once, no third-party noise, a progress line per validation and every N steps."""
import logging
import re
import subprocess
import sys

import pytest

from conftest import MULTI30K, ROOT, TINY, script_env
from seq2seq.cli import tidy_logging


@pytest.mark.slow
def test_a_run_without_terminal_reports_progress_once_per_line(tmp_path):
    run = subprocess.run([sys.executable, "scripts/train.py", *TINY, "data.train_limit=600", "data.eval_limit=30",
                          "trainer.max_epochs=2", "decoding.beam_size=1", "callbacks.progress.every_n_steps=5",
                          f"data.source.path={MULTI30K}", f"hydra.run.dir={tmp_path}"],
                         cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    console = run.stdout + run.stderr
    assert console.count("Seed set to 1234") == 1  # Lightning's own handler and Hydra's both printed it
    for noise in ("💡", "LeafSpec", "flops_per_batch"):
        assert noise not in console
    progress = [line for line in console.splitlines() if "seq2seq.training.callbacks" in line and "tgt tok/s" in line]
    validations = [line for line in progress if "val loss" in line]
    assert len(validations) == 2  # one per epoch
    assert re.search(r"epoch 1 step \d+ \| train loss [\d.]+ \| val loss [\d.]+ ppl [\d.]+ BLEU [\d.]+ chrF [\d.]+ \| "
                     r"[\d,]+ tgt tok/s \| elapsed \d:\d\d:\d\d remaining \d:\d\d:\d\d", validations[-1])
    steps = [int(m) for line in progress if "val loss" not in line for m in re.findall(r"step (\d+) ", line)]
    assert steps and all(s % 5 == 0 for s in steps) and len(steps) == len(set(steps))
    log_file = (tmp_path / "train.log").read_text()  # Lightning's lines reach the run's log file too
    assert "Seed set to 1234" in log_file and log_file.count("val loss") == 2


def test_lightning_imported_before_logging_was_set_up_still_logs_through_it(monkeypatch, caplog):
    for name in ("lightning.fabric", "lightning.pytorch"):  # what Lightning does when imported first
        monkeypatch.setattr(logging.getLogger(name), "propagate", False)
        monkeypatch.setattr(logging.getLogger(name), "handlers", [logging.StreamHandler()])
    with caplog.at_level(logging.INFO):  # the root logger has a handler, as Hydra's set-up gives it
        tidy_logging()
        logging.getLogger("lightning.fabric.utilities.distributed").info("Initializing distributed")
        logging.getLogger("lightning.pytorch.trainer").info("fit stopped")
    assert "Initializing distributed" in caplog.text and "fit stopped" in caplog.text
    assert not logging.getLogger("lightning.pytorch").handlers
