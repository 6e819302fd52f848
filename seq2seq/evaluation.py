"""Corpus scores with sacrebleu: BLEU, chrF and TER on detokenized text, with their signatures."""
import sacrebleu

METRICS = {"bleu": sacrebleu.BLEU, "chrf": sacrebleu.CHRF, "ter": sacrebleu.TER}


def corpus_scores(hyps: list[str], refs: list[str], metrics: tuple[str, ...] = ("bleu", "chrf", "ter")) -> dict:
    """{"bleu": 34.1, "bleu_signature": "nrefs:1|case:mixed|...", ...}: one hypothesis per reference."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    out = {}
    for name in metrics:
        metric = METRICS[name]()
        out[name] = metric.corpus_score(hyps, [refs]).score
        out[f"{name}_signature"] = str(metric.get_signature())
    return out
