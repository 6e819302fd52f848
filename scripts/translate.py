"""Translate a file (or stdin) with a model file: one output line per input line, in order.

attention_lines=[1,3] also saves those input lines' attention heat-maps as attention_dir/line<N>.png.
"""
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, ListConfig

from seq2seq.cli import check_command_line
from seq2seq.config import ConfigError

if TYPE_CHECKING:
    from seq2seq.translator import Translator


@hydra.main(version_base="1.3", config_path="../conf", config_name="translate")
def main(cfg: DictConfig) -> None:
    from seq2seq.cli import input_lines, output_file, user_errors
    from seq2seq.translator import Translator

    @user_errors
    def run() -> None:
        wanted = line_numbers(cfg.attention_lines)
        translator = Translator.load(cfg.model_file, beam_size=cfg.beam_size, alpha=cfg.alpha, max_len=cfg.max_len,
                                     max_source_len=cfg.max_source_len, max_tokens=cfg.max_tokens,
                                     device=cfg.device)
        if wanted and not translator.has_attention:
            print(f"note: {cfg.model_file} has no attention (model.attention: none): its decoder sees the source "
                  f"only through the encoder's final state, so there are no heat-maps to draw for attention_lines",
                  file=sys.stderr)
            wanted = set()
        picked: dict[int, str] = {}

        def lines() -> Iterator[str]:  # the input, keeping the lines to draw
            for number, line in enumerate(input_lines(cfg.input), 1):
                if number in wanted:
                    picked[number] = line
                yield line

        with output_file(cfg.output) as out:
            for line in translator.stream(lines()):
                out.write(line + "\n")
        if wanted:
            save_attention_maps(translator, picked, sorted(wanted - picked.keys()), cfg.attention_dir)

    run()


def line_numbers(value: int | ListConfig | None) -> set[int]:
    """attention_lines as a set of 1-based line numbers (one number or a list)."""
    numbers = [] if value is None else [value] if isinstance(value, int) else list(value)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in numbers):
        raise ConfigError(f"attention_lines must be input line numbers >= 1, e.g. [1,3]; got {value}")
    return set(numbers)


def save_attention_maps(translator: "Translator", picked: dict[int, str], missing: list[int], folder: str) -> None:
    """Attention heat-maps of the picked input lines {number: line}: folder/line<N>.png each."""
    from seq2seq.plots import attention_map, save

    if missing:
        print(f"warning: attention_lines {missing}: the input has fewer lines", file=sys.stderr)
    numbers = [n for n in sorted(picked) if picked[n].strip()]
    for n in sorted(picked.keys() - numbers):
        print(f"warning: input line {n} is empty: no attention map", file=sys.stderr)
    for n, a in zip(numbers, translator.attention([picked[n] for n in numbers])):
        path = save(attention_map(a.src_pieces, a.tgt_pieces, a.weights, title=f"attention, input line {n}"),
                    Path(folder) / f"line{n}.png")
        print(f"attention map: {path}", file=sys.stderr)


if __name__ == "__main__":
    check_command_line("translate")
    main()
