"""Speed and model-FLOP utilisation, ours and Joey NMT's side by side: prints a table, writes JSON."""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    from seq2seq.benchmark import main as benchmark

    benchmark(cfg)


if __name__ == "__main__":
    main()
