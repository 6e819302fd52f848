"""The literature's BLEU (bleu_lit): lowercase, Moses punctuation normalisation, Moses tokenization with
aggressive hyphen splitting and no escaping, then BLEU on the tokens, checked against answers worked out
by hand."""
import math

import pytest
import sacrebleu

from seq2seq.evaluation import corpus_scores, literature_bleu, literature_tokenize

# One substituted word (sitzt -> steht); the rest differs only in case, quotes, hyphen and spacing.
REF = "Ein Mann im T-Shirt sitzt auf einer „Bank“."
HYP = 'ein Mann im T-Shirt steht auf einer "Bank" .'
REF_TOKENS = 'ein mann im t @-@ shirt sitzt auf einer " bank " .'  # tokenized by hand
HYP_TOKENS = 'ein mann im t @-@ shirt steht auf einer " bank " .'


def test_each_preparation_step_changes_the_text() -> None:
    assert literature_tokenize([REF, HYP]) == [REF_TOKENS, HYP_TOKENS]
    assert literature_tokenize(["T-Shirt"]) == ["t @-@ shirt"]                     # lowercased, hyphen split
    assert literature_tokenize(["„Hallo“ … «ja»"]) == ['" hallo " ... " ja "']      # quotes and ellipsis normalised
    assert literature_tokenize(["Tom's & <b>"]) == ["tom ' s & < b >"]            # no &apos; &amp; &lt; escapes


def test_a_known_answer() -> None:
    """13 tokens, the 7th substituted: n-gram precisions 12/13, 10/12, 8/11, 6/10, equal lengths (BP 1)."""
    expected = 100 * math.exp((math.log(12 / 13) + math.log(10 / 12) + math.log(8 / 11) + math.log(6 / 10)) / 4)
    assert literature_bleu([HYP], [REF]) == pytest.approx(expected)
    assert sacrebleu.corpus_bleu([HYP_TOKENS], [[REF_TOKENS]], tokenize="none").score == pytest.approx(expected)
    assert sacrebleu.corpus_bleu([HYP], [[REF]]).score < expected - 20  # sacreBLEU sees the case and the quotes


def test_corpus_scores_name_the_preparation_and_language() -> None:
    hyps, refs = [HYP, "Zwei Hunde spielen im Schnee."], [REF, "Zwei Hunde spielen im Schnee ."]
    scores = corpus_scores(hyps, refs, ("bleu", "bleu_lit"), lang="de")
    assert scores["bleu_lit"] == pytest.approx(sacrebleu.corpus_bleu(
        [HYP_TOKENS, "zwei hunde spielen im schnee ."], [[REF_TOKENS, "zwei hunde spielen im schnee ."]],
        tokenize="none").score)
    assert scores["bleu_lit"] != pytest.approx(scores["bleu"])
    assert "|case:lc|" in scores["bleu_lit_signature"] and "|tok:none|" in scores["bleu_lit_signature"]
    assert "|prep:lc+moses-norm+moses-tok-a-no-escape:sacremoses-" in scores["bleu_lit_signature"]
    assert scores["bleu_lit_signature"].endswith("|lang:de")
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        literature_bleu(hyps, refs[:1])
