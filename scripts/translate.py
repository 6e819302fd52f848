"""Translate a file (or stdin) with a model file (or an ensemble): one output line per input line, in order.

n_best=K writes JSON lines {"line": i, "rank": r, "score": s, "text": ...} instead: the K best hypotheses
of every input line i (1-based), best first, score = log-probability / ((5 + pieces) / 6) ** alpha.
interactive=true (the default when stdin is a terminal) prints each translation as soon as its line arrives.
attention_lines=[1,3] also saves those input lines' attention heat-maps as attention_dir/line<N>.png.
"""
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, ListConfig

from seq2seq.cli import check_command_line
from seq2seq.config import ConfigError

if TYPE_CHECKING:
    from seq2seq.inference.translator import Translator


@hydra.main(version_base="1.3", config_path="../conf", config_name="translate")
def main(cfg: DictConfig) -> None:
    from seq2seq.cli import input_lines, output_file, user_errors
    from seq2seq.inference.translator import Translator

    @user_errors
    def run() -> None:
        wanted = line_numbers(cfg.attention_lines)
        translator = Translator.from_options(cfg)
        interactive = cfg.interactive or (cfg.input in (None, "-") and sys.stdin.isatty())
        chunk = 1 if interactive else 5000  # a line at a time, or big batches
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
            for number, hyps in enumerate(translator.stream_n_best(lines(), chunk=chunk, progress=not interactive), 1):
                if cfg.n_best is None:
                    out.write(hyps[0].text + "\n")
                else:
                    out.writelines(json.dumps({"line": number, "rank": rank, "score": round(h.score, 4), "text": h.text},
                                              ensure_ascii=False) + "\n" for rank, h in enumerate(hyps, 1))
                if interactive:
                    out.flush()
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
