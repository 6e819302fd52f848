"""Serve translations over HTTP: POST /translate, GET /health, GET /info, a page at GET / (seq2seq/inference/service.py).

    python scripts/serve.py model_file=runs/X/model.pt port=8080
    curl -s localhost:8080/translate -H 'Content-Type: application/json' -d '{"text": ["A dog runs."], "n_best": 2}'

Ends with status 0 after SIGTERM or SIGINT (requests in flight finish within grace_period), with one
`error:` line and status 1 when one of its processes dies, 2 for bad settings. The API key, if any, is
read from the environment variable named by api_key_env (docs/service-operations.md).
"""
import hydra
from omegaconf import DictConfig

from seq2seq.cli import check_command_line, run_command


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    run_command("seq2seq.inference.service.serve", cfg)


if __name__ == "__main__":
    check_command_line("serve")
    main()
