"""Corpus scores with sacrebleu: BLEU, chrF and TER on detokenized text, with their signatures; and the
literature's BLEU (``bleu_lit``) on lowercased, Moses-normalised and Moses-tokenized text.

The WMT multimodal translation papers, and the recurrent systems in them, score Multi30k with
multi-bleu / MultEval on text prepared by the Moses scripts, which gives other numbers than sacreBLEU's
detokenized, cased BLEU. ``bleu_lit`` prepares text in their order: lowercase;
``normalize-punctuation.perl``; ``tokenizer.perl -a -no-escape`` (sacremoses' ports), then BLEU on those
tokens (sacrebleu, ``tokenize="none"``).
"""
import functools
from collections.abc import Callable

import sacrebleu
import sacremoses

METRICS: dict[str, Callable[[], sacrebleu.metrics.base.Metric]] = {
    "bleu": sacrebleu.BLEU,
    # text prepared first; force: the tokenized periods it then ends in are meant
    "bleu_lit": functools.partial(sacrebleu.BLEU, tokenize="none", lowercase=True, force=True),
    "chrf": sacrebleu.CHRF,
    "ter": sacrebleu.TER,
}
LABELS = {
    "bleu": "BLEU",
    "bleu_lit": "BLEU (tokenized, lowercased — the WMT MMT papers' multi-bleu style; not comparable to sacreBLEU)",
    "chrf": "chrF",
    "ter": "TER",
}
LITERATURE_PREP = f"lc+moses-norm+moses-tok-a-no-escape:sacremoses-{sacremoses.__version__}"


@functools.cache
def _moses(lang: str) -> tuple[sacremoses.MosesPunctNormalizer, sacremoses.MosesTokenizer]:
    return sacremoses.MosesPunctNormalizer(lang=lang), sacremoses.MosesTokenizer(lang=lang)


def literature_tokenize(lines: list[str], lang: str = "de") -> list[str]:
    """Lines as the WMT MMT papers scored them: lowercased, punctuation normalised, Moses-tokenized with
    hyphens split aggressively (``t-shirt`` -> ``t @-@ shirt``) and no XML escaping; tokens joined by spaces."""
    normalizer, tokenizer = _moses(lang)
    return [tokenizer.tokenize(normalizer.normalize(line.lower()), aggressive_dash_splits=True, escape=False,
                               return_str=True) for line in lines]


def literature_bleu(hyps: list[str], refs: list[str], lang: str = "de") -> float:
    """Corpus BLEU the way the WMT MMT papers report it (see ``literature_tokenize``); `lang` is the
    target language. Not comparable to sacreBLEU's."""
    return corpus_scores(hyps, refs, ("bleu_lit",), lang)["bleu_lit"]


def corpus_scores(hyps: list[str], refs: list[str], metrics: tuple[str, ...] = ("bleu", "bleu_lit", "chrf", "ter"),
                  lang: str = "de") -> dict:
    """{"bleu": 34.1, "bleu_signature": "nrefs:1|case:mixed|...", ...}: one hypothesis per reference.

    `lang` (the target language) selects the Moses rules of ``bleu_lit``; its signature ends in ``|prep:...``.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    out = {}
    for name in metrics:
        metric = METRICS[name]()
        if name == "bleu_lit":
            out[name] = metric.corpus_score(literature_tokenize(hyps, lang), [literature_tokenize(refs, lang)]).score
            out[f"{name}_signature"] = f"{metric.get_signature()}|prep:{LITERATURE_PREP}|lang:{lang}"
        else:
            out[name] = metric.corpus_score(hyps, [refs]).score
            out[f"{name}_signature"] = str(metric.get_signature())
    return out
