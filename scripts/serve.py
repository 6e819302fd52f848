"""Serve translations over HTTP with LitServe: POST /translate, GET /health, GET /info (seq2seq/service.py).

    python scripts/serve.py model_file=runs/X/model.pt port=8080
    curl -s localhost:8080/translate -d '{"text": ["A dog runs."], "n_best": 2}'
"""
import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    from seq2seq.cli import user_errors
    from seq2seq.config import TranslatorConfig
    from seq2seq.inference.service import Limits, server
    from seq2seq.inference.translator import Translator

    @user_errors
    def run() -> None:
        options = TranslatorConfig.options(OmegaConf.to_container(cfg))
        info = {"model_file": options["model_file"], **Translator.from_options(options).info()}  # fails here, not in a worker
        limits = Limits(cfg.max_lines, cfg.max_chars, cfg.max_beam_size, info["decoding"]["beam_size"])
        service = server(options, limits, max_batch_size=cfg.max_batch_size, batch_timeout=cfg.batch_timeout,
                         workers=cfg.workers, timeout=cfg.timeout, threads=cfg.threads, info=info)
        service.run(host=cfg.host, port=cfg.port, generate_client_file=False, log_level="warning")

    run()


if __name__ == "__main__":
    main()
