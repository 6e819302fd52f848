"""Train a model: python scripts/train.py [model.hidden_size=512 ...] [experiment=...] [-m sweeps]."""
import time

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    start = time.monotonic()  # this job's start: a multirun runs every job in this one process
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from seq2seq.cli import user_errors
    from seq2seq.sweep import job_errors
    from seq2seq.train import train

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    results = (job_errors if multirun else user_errors)(train)(cfg)
    if results is None:  # a failed multirun job, listed as failed in the sweep table
        return None
    split = "val" if cfg.validate else "test"
    line = f"{split} BLEU {results[split + '/bleu']:.2f}  chrF {results[split + '/chrf']:.2f}  "
    line += f"({cfg.validate})" if cfg.validate else \
        f"(beam {cfg.decoding.beam_size})  model file: {results['model_file']}"
    line += f"  wall time {(time.monotonic() - start) / 60:.1f} min"
    if rank_zero_only.rank == 0:  # DDP: every rank returns the same scores
        print(line)
    return results.get("val/bleu")  # what a Hydra sweeper optimises: the best validation BLEU, never test


if __name__ == "__main__":
    main()
