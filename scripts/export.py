"""Export a model file to a folder that translates without torch: encoder and one-step decoder ONNX graphs, the
SentencePiece models, the model's config and decoding defaults (seq2seq/inference/onnx_export.py).

    python scripts/export.py model_file=runs/X/model.pt format=onnx out=exported/
    python scripts/translate.py backend=onnx model_file=exported/ input=in.en output=out.de

The folder replaces `out` only after its graphs have given the PyTorch model's states and log-probabilities
within `tolerance` on real sentences; a model that has no ONNX form here ends with one `error:` line.
"""
import hydra
from omegaconf import DictConfig

from seq2seq.cli import check_command_line, run_command


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> None:
    run_command("seq2seq.inference.onnx_export.export", cfg)


if __name__ == "__main__":
    check_command_line("export")
    main()
