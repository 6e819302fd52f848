"""benchmarks/translation.py on a tiny model: every configuration measured, the table built from them."""
import pytest

from benchmarks.translation import measure, median_round, table
from conftest import tiny_model_file

SOURCES = ["A dog runs.", "Two men talk on a corner.", "A girl in a pink dress climbs the stairs.", "People."]


@pytest.mark.parametrize("options", [{"beam_size": 1}, {"beam_size": 3, "precision": "bf16"},
                                     {"beam_size": 3, "quantize": "int8"}])
def test_measure(tmp_path, options: dict) -> None:
    model = str(tiny_model_file(tmp_path / "model.pt"))
    r = measure(model, options, SOURCES, SOURCES, threads=1)
    assert r["sents_s"] > 0 and r["tok_s"] > 0 and r["peak_rss_mib"] > 50 and r["threads"] == 1
    assert 0 <= r["bleu"] <= 100 and r["weights_mib"] > 0  # int8's smaller weights: tests/test_numerics.py


def test_table_names_every_row() -> None:
    row = {"sents_s": 10.0, "tok_s": 100.0, "peak_rss_mib": 500, "weights_mib": 18.0, "bleu": 30.0, "chrf": 55.0,
           "threads": 2, "seconds": 1.0}
    results = {"machine": "CPU X, 2 threads", "sentences": 4,
               "numerics": [{"numerics": n, "beam": 5, **row, "sents_s": s} for n, s in (("fp32", 10.0), ("int8", 20.0))],
               "joey": [{"beam": 5, "sents_s": 2.0, "tok_s": 20.0}],
               "ensemble": [{"model_file": ["a.pt", "b.pt"], "options": {"beam_size": 5}, **row}]}
    text = table(results)
    assert "CPU X" in text and "int8" in text and "2.00x" in text and "10.00x" in text and "a.pt + b.pt" in text


def test_each_configuration_reports_its_median_round() -> None:
    rounds = [{"numerics": [{"beam": 1, "sents_s": s, "tok_s": 10 * s}, {"beam": 5, "sents_s": 100 - s, "tok_s": 1}]}
              for s in (10.0, 30.0, 20.0)]
    assert median_round(rounds, "numerics") == [{"beam": 1, "sents_s": 20.0, "tok_s": 200.0},
                                                {"beam": 5, "sents_s": 80.0, "tok_s": 1}]
