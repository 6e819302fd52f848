"""BLEU, chrF and TER (sacrebleu) of a hypothesis file, or of a model on a data split; beside them the
literature's BLEU (bleu_lit: lowercased, Moses-tokenized text, as the WMT multimodal papers score Multi30k).

report=report.md (or .html) also writes a report: signatures, scores by source length, worst sentences.
"""
import hydra
from omegaconf import DictConfig

from seq2seq.cli import check_command_line, run_command


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_command("seq2seq.commands.evaluate", cfg)


if __name__ == "__main__":
    check_command_line("evaluate")
    main()
