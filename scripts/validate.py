"""Validation scores of a checkpoint or model file, with a Trainer: python scripts/validate.py model_file=X [trainer=ddp]."""
import hydra
from omegaconf import DictConfig

from seq2seq.cli import check_command_line


@hydra.main(version_base="1.3", config_path="../conf", config_name="validate")
def main(cfg: DictConfig) -> None:
    from lightning.pytorch.utilities.rank_zero import rank_zero_only

    from seq2seq.cli import user_errors
    from seq2seq.training.validate import validate

    results = user_errors(validate)(cfg)
    if rank_zero_only.rank == 0:
        print(f"val BLEU {results['val/bleu']:.2f}  chrF {results['val/chrf']:.2f}  "
              f"loss {results['val/loss']:.4f}  ({cfg.model_file})")


if __name__ == "__main__":
    check_command_line("validate")
    main()
