"""Train a model: python scripts/train.py [model.hidden_size=512 ...] [experiment=...] [-m sweeps]."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from seq2seq.train import train

    results = train(cfg)
    print(f"test BLEU {results['test/bleu']:.2f}  chrF {results['test/chrf']:.2f}  "
          f"(beam {cfg.decoding.beam_size})  model file: {results['model_file']}")
    return results["test/bleu"]  # the value a Hydra sweeper optimises


if __name__ == "__main__":
    main()
