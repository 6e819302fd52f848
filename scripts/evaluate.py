"""BLEU, chrF and TER (sacrebleu) of a hypothesis file, or of a model on a data split; beside them the
literature's BLEU (bleu_lit: lowercased, Moses-tokenized text, as the WMT multimodal papers score Multi30k).

report=report.md (or .html) also writes a report: signatures, scores by source length, worst sentences.
"""
import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from seq2seq.cli import check_command_line


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from hydra.utils import instantiate

    from seq2seq.cli import input_lines, output_file, user_errors
    from seq2seq.config import ConfigError
    from seq2seq.data.sources import DataError
    from seq2seq.evaluation import LABELS, corpus_scores
    from seq2seq.inference.translator import Translator

    @user_errors
    def run() -> None:
        if cfg.report:  # a bad report name fails now, not after translating the split
            from seq2seq.report import report_format, write_report

            report_format(Path(cfg.report))
        if cfg.model_file:
            data = instantiate(cfg.data).load(cfg.split)
            translator = Translator.from_options(cfg, n_best=None)  # the 1-best is scored
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
            written = write_report(Path(cfg.report), hyps, refs, scores, srcs, f"{about} {len(hyps)} sentences.")
            print(f"report: {', '.join(map(str, written))}", file=sys.stderr)
        if cfg.json:
            print(json.dumps(scores, indent=1))
        else:
            for name in cfg.metrics:
                note = "" if LABELS[name].lower() == name else f"  ({LABELS[name]})"
                print(f"{name.upper():8s} {scores[name]:6.2f}  {scores[name + '_signature']}{note}")

    run()


if __name__ == "__main__":
    check_command_line("evaluate")
    main()
