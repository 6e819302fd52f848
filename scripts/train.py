"""Train a model: python scripts/train.py [model.hidden_size=512 ...] [experiment=...] [-m sweeps]."""
import time

import hydra
from omegaconf import DictConfig

import seq2seq.config  # noqa: F401  (registers the typed configs with Hydra)
from seq2seq.cli import check_command_line


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    start = time.monotonic()  # this job's start: a multirun runs every job in this one process
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from seq2seq.cli import user_errors
    from seq2seq.training.sweep import job_errors
    from seq2seq.training.train import train

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    results = (job_errors if multirun else user_errors)(train)(cfg)
    if results is None:  # a failed multirun job, listed as failed in the sweep table
        return None
    if rank_zero_only.rank == 0:  # DDP: every rank returns the same scores
        print(f"test BLEU {results['test/bleu']:.2f}  chrF {results['test/chrf']:.2f}  "
              f"BLEU (lit.) {results['test/bleu_lit']:.2f} (tokenized, lowercased: not sacreBLEU)  "
              f"(beam {cfg.decoding.beam_size})  model file: {results['model_file']}  "
              f"wall time {(time.monotonic() - start) / 60:.1f} min")
    return results.get("val/bleu")  # what a Hydra sweeper optimises: the best validation BLEU, never test


if __name__ == "__main__":
    check_command_line("train")
    main()
