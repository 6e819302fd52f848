"""What scripts/translate.py and scripts/evaluate.py do, given their typed configs (seq2seq/config.py):
the scripts parse the command line, these functions do the work."""
import json
import sys
from collections.abc import Iterator
from itertools import tee
from pathlib import Path

from hydra.utils import instantiate

from seq2seq.cli import input_lines, input_records, output_file
from seq2seq.config import ConfigError, EvaluateConfig, TranslateConfig
from seq2seq.data.sources import DataError
from seq2seq.evaluation import LABELS, corpus_scores
from seq2seq.inference.translator import AlignedHypothesis, Hypothesis, Translator


def translate(cfg: TranslateConfig) -> None:
    """One output line per input line, in order (n_best or alignments: JSON lines); attention maps of the
    chosen lines. input_format=jsonl lines may carry a prefix each."""
    wanted = set(cfg.attention_lines)
    translator = Translator.from_options(vars(cfg))
    interactive = cfg.interactive or (cfg.input in (None, "-") and sys.stdin.isatty())
    chunk = 1 if interactive else 5000  # a line at a time, or big batches
    if wanted and not translator.has_attention:
        print(f"note: {cfg.model_file} has no attention (model.attention: none): its decoder sees the source only "
              f"through the encoder's final state, so there are no heat-maps to draw for attention_lines", file=sys.stderr)
        wanted = set()
    picked: dict[int, tuple[str, str | None]] = {}

    def records() -> Iterator[tuple[str, str | None]]:  # the input's (text, prefix), keeping the lines to draw
        for number, record in enumerate(input_records(cfg.input, cfg.input_format), 1):
            if number in wanted:
                picked[number] = record
            yield record

    texts, prefixes = tee(records())
    found = translator.stream_n_best((text for text, _ in texts), chunk=chunk, progress=not interactive,
                                     prefixes=(prefix for _, prefix in prefixes), alignments=cfg.alignments)
    with output_file(cfg.output) as out:
        for number, hyps in enumerate(found, 1):
            if cfg.n_best is None and not cfg.alignments:
                out.write(hyps[0].text + "\n")
            else:
                out.writelines(json.dumps(hypothesis_record(number, rank, h), ensure_ascii=False) + "\n"
                               for rank, h in enumerate(hyps, 1))
            if interactive:
                out.flush()
    if wanted:
        save_attention_maps(translator, picked, sorted(wanted - picked.keys()), cfg.attention_dir)


def hypothesis_record(number: int, rank: int, h: Hypothesis) -> dict:
    """One JSON-lines record: line and rank (from 1), score, text, and an aligned hypothesis's pieces (EOS left
    out), each target piece's most-attended source piece and the (source word, target word) pairs."""
    record = {"line": number, "rank": rank, "score": round(h.score, 4), "text": h.text}
    return record | h.alignment.record() if isinstance(h, AlignedHypothesis) else record


def save_attention_maps(translator: Translator, picked: dict[int, tuple[str, str | None]], missing: list[int],
                        folder: str) -> None:
    """Attention heat-maps of the picked input lines {number: (text, prefix)}: folder/line<N>.png each."""
    from seq2seq.plots import attention_map, save

    if missing:
        print(f"warning: attention_lines {missing}: the input has fewer lines", file=sys.stderr)
    numbers = [n for n in sorted(picked) if picked[n][0].strip()]
    for n in sorted(picked.keys() - numbers):
        print(f"warning: input line {n} is empty: no attention map", file=sys.stderr)
    for n, a in zip(numbers, translator.attention([picked[n][0] for n in numbers], [picked[n][1] for n in numbers])):
        path = save(attention_map(a.src_pieces, a.tgt_pieces, a.weights, title=f"attention, input line {n}"),
                    Path(folder) / f"line{n}.png")
        print(f"attention map: {path}", file=sys.stderr)


def evaluate(cfg: EvaluateConfig) -> None:
    """Scores of a hypothesis file against references, or of a model on a data split; optionally a report."""
    if cfg.report:  # a bad report name fails now, not after translating the split
        from seq2seq.report import report_format

        report_format(Path(cfg.report))
    if cfg.model_file:
        data = instantiate(cfg.data).load(cfg.split)
        translator = Translator.from_options(vars(cfg), n_best=None)  # the 1-best is scored
        srcs, refs = list(data["src"]), list(data["tgt"])
        hyps = list(translator.stream(srcs, total=len(data)))
        about = f"Model `{cfg.model_file}` on split `{cfg.split}` (beam size {translator.beam_size})."
        if cfg.output:
            with output_file(cfg.output) as out:
                out.writelines(h + "\n" for h in hyps)
    elif cfg.hyp and cfg.ref:
        hyps, refs = list(input_lines(cfg.hyp)), list(input_lines(cfg.ref))
        if len(hyps) != len(refs):
            raise DataError(f"{cfg.hyp} has {len(hyps)} lines but {cfg.ref} has {len(refs)}")
        srcs = list(input_lines(cfg.src)) if cfg.src else None
        if srcs is not None and len(srcs) != len(refs):
            raise DataError(f"{cfg.src} has {len(srcs)} lines but {cfg.ref} has {len(refs)}")
        about = f"Hypotheses `{cfg.hyp}`, references `{cfg.ref}`" + (f", sources `{cfg.src}`." if srcs else ".")
    else:
        raise ConfigError("give hyp=FILE ref=FILE [src=FILE], or model_file=FILE [split=test]")
    scores = corpus_scores(hyps, refs, tuple(cfg.metrics), cfg.lang)
    scores["sentences"] = len(hyps)
    if cfg.report:
        from seq2seq.report import write_report

        written = write_report(Path(cfg.report), hyps, refs, scores, srcs, f"{about} {len(hyps)} sentences.")
        print(f"report: {', '.join(map(str, written))}", file=sys.stderr)
    if cfg.json:
        print(json.dumps(scores, indent=1))
    else:
        for name in cfg.metrics:
            note = "" if LABELS[name].lower() == name else f"  ({LABELS[name]})"
            print(f"{name.upper():8s} {scores[name]:6.2f}  {scores[name + '_signature']}{note}")
