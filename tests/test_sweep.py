"""Sweeps that end in one table: the report from job folders, a real grid sweep with a failing job, and a
search with Hydra's Optuna sweeper that maximises validation BLEU."""
import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image as mpimg
import pytest
from omegaconf import OmegaConf

from conftest import MULTI30K, ROOT, TINY, script_env
from seq2seq.plots import read_metrics
from seq2seq.training.sweep import ERROR, RECORD, SweepReport

# Tiny jobs of a few seconds: two validations for a curve, a throughput window that fills.
QUICK = [*TINY, f"data.source.path={MULTI30K}", "data.train_limit=1000", "data.eval_limit=50", "trainer.max_epochs=2",
         "trainer.log_every_n_steps=2", "+callbacks.throughput.window_size=4", "decoding.beam_size=1",
         "decoding.max_len=30"]
COLUMNS = ["job", "status", "val_bleu", "test_bleu", "tgt_tokens_per_s", "wall_min", "error", "folder"]


def fake_job(sweep: Path, job: int, overrides: list[str], rows: list[dict], error: str | None = None) -> None:
    folder = sweep / str(job)
    (folder / "logs").mkdir(parents=True)
    record = {"job": job, "overrides": overrides, "status": "failed" if error else "ok", "error": error,
              "wall_s": 30.0 * (job + 1)}
    (folder / RECORD).write_text(json.dumps(record))
    with open(folder / "logs" / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["epoch", "step", "train/items_per_sec", "val/bleu", "test/bleu"])
        writer.writeheader()
        writer.writerows(rows)


def test_report_from_job_folders(tmp_path) -> None:
    fake_job(tmp_path, 0, ["trainer.max_time=1", "model.dropout=0.2"],
             [{"step": 10, "train/items_per_sec": 1000}, {"step": 20, "train/items_per_sec": 3000},
              {"step": 20, "epoch": 0, "val/bleu": 12.5}, {"step": 40, "epoch": 1, "val/bleu": 11.0},
              {"step": 40, "test/bleu": 13.25}])
    fake_job(tmp_path, 1, ["trainer.max_time=1", "model.dropout=0.9"], [], error="ValueError: bad | value")
    fake_job(tmp_path, 2, ["trainer.max_time=1", "model.dropout=0.3"],
             [{"step": 10, "train/items_per_sec": 500}, {"step": 20, "epoch": 0, "val/bleu": 14.0}])
    SweepReport().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))

    rows = list(csv.DictReader(open(tmp_path / "sweep.csv", encoding="utf-8")))
    assert [r["job"] for r in rows] == ["0", "1", "2"]
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert rows[0]["trainer.max_time"] == "1" and rows[2]["model.dropout"] == "0.3"
    assert (rows[0]["val_bleu"], rows[0]["test_bleu"], rows[0]["tgt_tokens_per_s"]) == ("12.50", "13.25", "2000")
    assert (rows[2]["val_bleu"], rows[2]["test_bleu"]) == ("14.00", "")  # best of the curve; no test yet
    assert rows[1]["error"] == "ValueError: bad | value" and rows[1]["wall_min"] == "1.00"
    text = (tmp_path / "sweep.md").read_text()
    assert "`trainer.max_time=1`" in text.split("|")[0]  # shared overrides above the table, not in it
    assert "| job | model.dropout | status |" in text
    assert "| 1 | 0.9 | failed: ValueError: bad \\| value | n/a | n/a | n/a | 1.0 |" in text
    assert "| 2 | 0.3 | ok | 14.00 | n/a | 500 | 1.5 |" in text
    assert "Best by val BLEU: job 2 (`model.dropout=0.3`), 14.00." in text
    height, width = mpimg.imread(tmp_path / "sweep_val_bleu.png").shape[:2]
    assert height > 300 and width > 500


def sweep(args: list[str], sweep_dir: Path, python: str = sys.executable) -> tuple[subprocess.Popen, float]:
    process = subprocess.Popen([python, "scripts/train.py", "-m", *QUICK, *args, f"hydra.sweep.dir={sweep_dir}"],
                               cwd=ROOT, env=script_env(HYDRA_FULL_ERROR="1"), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    return process, time.monotonic()


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict:
    """A grid of three jobs whose middle one fails (dropout 1.5), and a three-trial Optuna search,
    started together and awaited."""
    root = tmp_path_factory.mktemp("sweeps")
    started = {"grid": sweep(["model.dropout=0.1,1.5,0.2"], root / "grid"),
               "optuna": sweep(["hydra/sweeper=optuna_val_bleu", "hydra.sweeper.n_trials=3",
                                "model.dropout=choice(0.1,1.5)"], root / "optuna")}
    done = {}
    for name, (process, start) in started.items():
        out, _ = process.communicate(timeout=400)
        done[name] = {"rc": process.returncode, "out": out, "seconds": time.monotonic() - start, "dir": root / name}
    return done


def table(run: dict) -> list[dict]:
    assert run["rc"] == 0, run["out"][-4000:]
    return list(csv.DictReader(open(run["dir"] / "sweep.csv", encoding="utf-8")))


@pytest.mark.slow
def test_grid_sweep_ends_in_a_table_and_a_plot(sweeps) -> None:
    run = sweeps["grid"]
    rows = table(run)
    assert [(r["job"], r["model.dropout"], r["status"]) for r in rows] == [("0", "0.1", "ok"), ("1", "1.5", "failed"),
                                                                          ("2", "0.2", "ok")]
    printed = [float(m) for m in re.findall(r"test BLEU (\d+\.\d\d) ", run["out"])]
    for row, test_bleu in zip([rows[0], rows[2]], printed):
        metrics = read_metrics(run["dir"] / row["folder"] / "logs" / "metrics.csv")
        assert float(row["val_bleu"]) == pytest.approx(max(metrics["val/bleu"][1]), abs=0.005)
        assert len(metrics["val/bleu"][1]) == 2
        assert float(row["test_bleu"]) == pytest.approx(test_bleu, abs=0.006)
        readings = metrics["train/device/items_per_sec"][1]  # one device: ThroughputMonitor's per-device column
        assert float(row["tgt_tokens_per_s"]) == pytest.approx(sum(readings) / len(readings), abs=0.5)
    # each job's wall time is its own: together they fit in the sweep's time, and the printed line agrees
    walls = [float(r["wall_min"]) for r in rows]
    assert all(w >= 0 for w in walls) and sum(walls) * 60 < run["seconds"]
    printed_walls = [float(m) for m in re.findall(r"wall time (\d+\.\d) min", run["out"])]
    assert len(printed_walls) == 2
    assert all(p <= w + 0.06 for p, w in zip(printed_walls, [walls[0], walls[2]]))
    text = (run["dir"] / "sweep.md").read_text()
    assert "| job | model.dropout | status | val BLEU | test BLEU | tgt tokens/s | wall min |" in text
    assert "![validation BLEU of every job](sweep_val_bleu.png)" in text
    height, width = mpimg.imread(run["dir"] / "sweep_val_bleu.png").shape[:2]
    assert height > 300 and width > 500


@pytest.mark.slow
def test_a_failed_job_is_listed_and_the_sweep_goes_on(sweeps) -> None:
    run = sweeps["grid"]
    rows = table(run)
    assert rows[1]["error"] == "ConfigError: model.dropout must be a number in [0, 1), got 1.5"
    assert rows[1]["val_bleu"] == rows[1]["test_bleu"] == ""
    failed = run["dir"] / rows[1]["folder"]
    assert (failed / ERROR).is_file() and "Traceback" in (failed / "train.log").read_text()
    assert (run["dir"] / rows[2]["folder"] / "model.pt").is_file()  # the job after it ran to the end
    assert "| 1 | 1.5 | failed: ConfigError: model.dropout must be a number in [0, 1), got 1.5 |" in \
        (run["dir"] / "sweep.md").read_text()


@pytest.mark.slow
def test_optuna_search_maximises_validation_bleu(sweeps) -> None:
    run = sweeps["optuna"]
    rows = table(run)
    assert len(rows) == 3 and {"label_smoothing", "optim.lr", "model.dropout"} <= set(rows[0])
    for row in rows:  # a failing setting is a failed trial; the search goes on
        assert row["status"] == ("failed" if row["model.dropout"] == "1.5" else "ok"), row
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok and len(ok) < len(rows), "the seeded search tries both dropouts"
    best = max(ok, key=lambda r: float(r["val_bleu"]))
    result = OmegaConf.load(run["dir"] / "optimization_results.yaml")
    metrics = read_metrics(run["dir"] / best["folder"] / "logs" / "metrics.csv")
    assert result["best_value"] == pytest.approx(max(metrics["val/bleu"][1]))  # validation BLEU, not test
    assert result["best_value"] != pytest.approx(metrics["test/bleu"][1][-1])
    assert result["best_params"]["optim.lr"] == pytest.approx(float(best["optim.lr"]))
    assert f"Best parameters: {OmegaConf.to_container(result.best_params)}" in run["out"]
