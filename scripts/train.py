"""Train a model: python scripts/train.py [model.hidden_size=512 ...] [experiment=...] [-m sweeps]."""
import time

import hydra
from omegaconf import DictConfig

START = time.monotonic()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from seq2seq.cli import user_errors
    from seq2seq.train import train

    results = user_errors(train)(cfg)
    split = "val" if cfg.validate else "test"
    line = f"{split} BLEU {results[split + '/bleu']:.2f}  chrF {results[split + '/chrf']:.2f}  "
    line += f"({cfg.validate})" if cfg.validate else \
        f"(beam {cfg.decoding.beam_size})  model file: {results['model_file']}"
    line += f"  wall time {(time.monotonic() - START) / 60:.1f} min"
    if rank_zero_only.rank == 0:  # DDP: every rank returns the same scores
        print(line)
    return results[split + "/bleu"]  # the value a Hydra sweeper optimises


if __name__ == "__main__":
    main()
