"""Whose files are in the run folder that every rank of a data-parallel run shares (on every node).

Global rank 0 writes Hydra's files (``.hydra/`` and the job's log, e.g. ``train.log``) and all of the run's
own files; another rank writes only its log, ``<job>_rank<N>.log``. Hydra writes its files before the
task runs, when the global rank may still be unknown (under Lightning's launcher it is node rank x devices
+ local rank, and the Trainer resolves devices), but whether it is 0 is known from what launchers set.
"""
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict, read_write

# torchrun sets RANK and GROUP_RANK (its node rank), srun SLURM_PROCID, Lightning's own launcher LOCAL_RANK
# for the processes it starts; NODE_RANK is Lightning's node rank, which the user sets on every other node.
RANK_VARIABLES = ("RANK", "GROUP_RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def started_as_rank_zero(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this process is global rank 0 or alone: no launcher's rank variable says otherwise."""
    return all(environ.get(name, "0") == "0" for name in RANK_VARIABLES)


class RankZeroHydraFiles(Callback):
    """Hydra callback (``hydra.callbacks``): a process started as a rank other than global rank 0 writes none
    of Hydra's files into the run folder: no ``.hydra/`` (rank 0's record of the run, which every torchrun
    or srun process would rewrite) and no job log file (torchrun's and srun's processes would all append
    to rank 0's ``train.log``; Lightning's launcher names its local ranks' logs by local rank alone, the
    same names on every node). Console handlers stay; rank_log gives the process its own log file."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if started_as_rank_zero():
            return
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.output_subdir = None
            logging_cfg = config.hydra.job_logging
            if not logging_cfg or "handlers" not in logging_cfg:
                return
            files = [name for name, handler in logging_cfg.handlers.items() if "filename" in handler]
            for name in files:
                del logging_cfg.handlers[name]
            for logger in [logging_cfg.get("root"), *(logging_cfg.get("loggers") or {}).values()]:
                if logger and "handlers" in logger:
                    logger.handlers = [h for h in logger.handlers if h not in files]


@contextmanager
def rank_log(run_dir: Path, job: str, rank: int) -> Iterator[None]:
    """While the block runs, a rank > 0 logs into its own file ``run_dir/<job>_rank<rank>.log`` too, in the
    format of the console's lines; rank 0 logs into Hydra's log file, nothing to add."""
    if rank == 0:
        yield
        return
    root = logging.getLogger()
    handler = logging.FileHandler(Path(run_dir) / f"{job}_rank{rank}.log", encoding="utf-8")
    handler.setFormatter(next((h.formatter for h in root.handlers if h.formatter), None))
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
