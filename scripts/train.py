"""Train a model: python scripts/train.py [model.hidden_size=512 ...] [experiment=...] [-m sweeps]."""
import time

import hydra
from omegaconf import DictConfig

import seq2seq.config  # noqa: F401  (registers the typed configs with Hydra)
from seq2seq.cli import check_command_line

START = time.monotonic()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from seq2seq.cli import user_errors
    from seq2seq.train import train

    results = user_errors(train)(cfg)
    if rank_zero_only.rank == 0:  # DDP: every rank returns the same scores
        print(f"test BLEU {results['test/bleu']:.2f}  chrF {results['test/chrf']:.2f}  "
              f"(beam {cfg.decoding.beam_size})  model file: {results['model_file']}  "
              f"wall time {(time.monotonic() - START) / 60:.1f} min")
    return results["test/bleu"]


if __name__ == "__main__":
    check_command_line("train")
    main()
