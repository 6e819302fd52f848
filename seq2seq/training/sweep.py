"""Sweeps that end in one table: a Hydra callback that writes, at the top of a multirun's sweep folder,
every job's overrides, status, best validation BLEU, test BLEU, mean target tokens/s and wall time
(``sweep.md``, ``sweep.csv``) and one plot of the jobs' validation BLEU curves (``sweep_val_bleu.png``).

Failed jobs. Hydra's BasicSweeper re-raises a failed job's exception once its batch has run (by default
the whole grid), which ends the multirun with an error and skips ``on_multirun_end``; Optuna's sweeper
records a trial as failed when the job raised or returned something that is not a number. So the
training entry runs each multirun job under ``job_errors``: an exception is logged with its traceback,
its one-line message written to the job's ``error.txt``, and the job returns None. Both sweepers go on;
this report lists the job as failed with that message.
"""
import csv
import functools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from statistics import mean
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

log = logging.getLogger(__name__)

RECORD = "sweep_job.json"  # in each job folder: what on_job_end saw
ERROR = "error.txt"        # in a failed job's folder: the exception's one-line message
THROUGHPUT = ("train/items_per_sec", "train/device/items_per_sec")  # ThroughputMonitor: target tokens/s


def job_errors(train: Callable[[DictConfig], dict]) -> Callable[[DictConfig], dict | None]:
    """`train` for one job of a multirun: an exception is logged, its message written to
    ``<paths.run_dir>/error.txt``, and None returned, so that the sweep goes on."""
    @functools.wraps(train)
    def job(cfg: DictConfig) -> dict | None:
        try:
            return train(cfg)
        except Exception as e:
            log.exception("job failed: %s", e)
            run_dir = Path(cfg.paths.run_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR).write_text(f"{type(e).__name__}: {e}\n", encoding="utf-8")
            return None
    return job


class SweepReport(Callback):
    """Hydra callback (``hydra.callbacks``): each multirun job leaves a record in its folder, and when
    the multirun ends the records and the jobs' CSV metrics (`metrics`, relative to the job folder)
    become the sweep's table and plot. Single runs are left alone."""

    def __init__(self, metrics: str = "logs/metrics.csv", name: str = "sweep") -> None:
        self.metrics, self.name = metrics, name
        self._start: float | None = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start = time.monotonic()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra_cfg = job_return.hydra_cfg.hydra
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return
        folder = Path(hydra_cfg.runtime.output_dir)
        error = folder / ERROR
        if job_return.status == JobStatus.FAILED:  # raised past job_errors (another task function)
            message = f"{type(job_return._return_value).__name__}: {job_return._return_value}"
        else:
            message = error.read_text(encoding="utf-8").strip() if error.is_file() else None
        record = {"job": int(hydra_cfg.job.num), "overrides": list(job_return.overrides or []),
                  "status": "ok" if message is None else "failed", "error": message,
                  "wall_s": time.monotonic() - self._start if self._start is not None else None}
        (folder / RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = [job_row(path.parent, self.metrics) for path in sweep_dir.rglob(RECORD)]
        if not rows:
            log.warning("no job records in %s: no sweep table", sweep_dir)
            return
        rows.sort(key=lambda r: r["job"])
        written = write_sweep_report(sweep_dir, rows, self.name)
        best = best_row(rows)
        log.info("sweep table: %s", ", ".join(map(str, written)))
        if best is not None:
            log.info("best val BLEU %.2f: job %d (%s), folder %s", best["val_bleu"], best["job"],
                     " ".join(_varying(best, split_overrides(rows)[1])) or "no overrides", best["folder"])


def job_row(folder: Path, metrics: str) -> dict:
    """A job's record joined with what its metrics.csv says: best val BLEU, test BLEU, mean target
    tokens/s and the validation BLEU curve (None where not logged)."""
    from seq2seq.plots import read_metrics

    row = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    series = read_metrics(folder / metrics) if (folder / metrics).is_file() else {}
    throughput = next((series[c][1] for c in THROUGHPUT if c in series), None)
    row.update(folder=str(folder), val_curve=series.get("val/bleu"),
               val_bleu=max(series["val/bleu"][1]) if "val/bleu" in series else None,
               test_bleu=series["test/bleu"][1][-1] if "test/bleu" in series else None,
               tgt_tokens_per_s=mean(throughput) if throughput else None,
               wall_min=row["wall_s"] / 60 if row["wall_s"] is not None else None)
    return row


def best_row(rows: list[dict]) -> dict | None:
    """The successful job with the highest validation BLEU (the first of equals)."""
    scored = [r for r in rows if r["status"] == "ok" and r["val_bleu"] is not None]
    return max(scored, key=lambda r: r["val_bleu"], default=None)


def split_overrides(rows: list[dict]) -> tuple[list[str], list[str]]:
    """(overrides every job shares, keys whose values differ between jobs), in first-seen order."""
    per_job = [dict(_key_value(o) for o in r["overrides"]) for r in rows]
    keys = list(dict.fromkeys(k for job in per_job for k in job))
    varying = [k for k in keys if len({job.get(k) for job in per_job}) > 1]
    shared = [o for o in rows[0]["overrides"] if _key_value(o)[0] not in varying]
    return shared, varying


def _key_value(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


def write_sweep_report(sweep_dir: Path, rows: list[dict], name: str = "sweep") -> list[Path]:
    """<name>.md, <name>.csv and <name>_val_bleu.png in `sweep_dir`; returns them."""
    from seq2seq.plots import save, sweep_curves

    shared, varying = split_overrides(rows)
    all_keys = list(dict.fromkeys(_key_value(o)[0] for r in rows for o in r["overrides"]))
    table, markdown = sweep_dir / f"{name}.csv", sweep_dir / f"{name}.md"
    plot = save(sweep_curves({f"job {r['job']}: " + (" ".join(_varying(r, varying)) or "no overrides"):
                              r["val_curve"] for r in rows if r["val_curve"]},
                             title=f"validation BLEU of the sweep's jobs ({sweep_dir.name})"),
                sweep_dir / f"{name}_val_bleu.png")
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["job", *all_keys, "status", "val_bleu", "test_bleu", "tgt_tokens_per_s", "wall_min",
                         "error", "folder"])
        for r in rows:
            values = dict(_key_value(o) for o in r["overrides"])
            writer.writerow([r["job"], *(values.get(k, "") for k in all_keys), r["status"],
                             *(_fmt(r[k], 2) for k in ("val_bleu", "test_bleu")), _fmt(r["tgt_tokens_per_s"], 0),
                             _fmt(r["wall_min"], 2), r["error"] or "",
                             Path(r["folder"]).relative_to(sweep_dir).as_posix()])
    best = best_row(rows)
    lines = [f"# Sweep `{sweep_dir}`", "",
             f"{len(rows)} jobs, {sum(r['status'] == 'failed' for r in rows)} failed. Overrides every job shares: "
             + (" ".join(f"`{o}`" for o in shared) or "none") + ".",
             "val BLEU: the best greedy validation BLEU of the run (what a sweeper optimises); test BLEU: beam "
             "search with the run's model file; tgt tokens/s: the mean of the run's ThroughputMonitor readings; "
             "wall: that job alone.", ""]
    if best is not None:
        lines += [f"Best by val BLEU: job {best['job']} (" + (" ".join(f"`{o}`" for o in _varying(best, varying))
                                                              or "no overrides") + f"), {best['val_bleu']:.2f}.", ""]
    lines += ["| job | " + "".join(f"{k} | " for k in varying) + "status | val BLEU | test BLEU | tgt tokens/s | "
              "wall min |", "|---:|" + "---|" * len(varying) + "---|---:|---:|---:|---:|"]
    for r in rows:
        values = dict(_key_value(o) for o in r["overrides"])
        status = "ok" if r["status"] == "ok" else f"failed: {r['error']}".replace("|", "\\|")
        lines.append(f"| {r['job']} | " + "".join(f"{_short(values.get(k, ''))} | " for k in varying) + f"{status} | "
                     + " | ".join(_fmt(r[k], 2) or "n/a" for k in ("val_bleu", "test_bleu"))
                     + f" | {_fmt(r['tgt_tokens_per_s'], 0) or 'n/a'} | {_fmt(r['wall_min'], 1) or 'n/a'} |")
    lines += ["", f"![validation BLEU of every job]({plot.name})", ""]
    markdown.write_text("\n".join(lines), encoding="utf-8")
    return [markdown, table, plot]


def _varying(row: dict, varying: list[str]) -> list[str]:
    return [o for o in row["overrides"] if _key_value(o)[0] in varying]


def _short(value: str) -> str:
    """A sampled float such as 0.0875455478014229 as 0.08755; anything else as it is."""
    try:
        return f"{float(value):.4g}" if len(value) > 8 and "." in value else value
    except ValueError:
        return value


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"
