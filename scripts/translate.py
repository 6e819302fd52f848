"""Translate a file (or stdin) with a model file (or an ensemble): one output line per input line, in order.

n_best=K writes JSON lines {"line": i, "rank": r, "score": s, "text": ...} instead: the K best hypotheses
of every input line i (1-based), best first, score = log-probability / ((5 + pieces) / 6) ** alpha.
interactive=true (the default when stdin is a terminal) prints each translation as soon as its line arrives.
attention_lines=[1,3] also saves those input lines' attention heat-maps as attention_dir/line<N>.png.
input_format=jsonl reads {"text": ..., "prefix": ...} lines: each translation starts with its prefix's pieces
(scores include their log-probabilities). alignments=true writes JSON lines with each hypothesis's pieces,
piece_alignment and word_alignment. sampling=top_k|top_p draws each translation instead of searching.
"""
import hydra
from omegaconf import DictConfig

from seq2seq.cli import check_command_line, run_command


@hydra.main(version_base="1.3", config_path="../conf", config_name="translate")
def main(cfg: DictConfig) -> None:
    run_command("seq2seq.commands.translate", cfg)


if __name__ == "__main__":
    check_command_line("translate")
    main()
