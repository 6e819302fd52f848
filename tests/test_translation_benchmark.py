"""benchmarks/translation.py on a tiny model: every configuration measured, the table built from them."""
import pytest

from benchmarks.translation import measure, median_round, table
from conftest import tiny_model_file
from seq2seq.evaluation import corpus_scores
from seq2seq.inference.translator import Translator

SOURCES = ["A dog runs.", "Two men talk on a corner.", "A girl in a pink dress climbs the stairs.", "People."]


@pytest.mark.parametrize("options", [{"beam_size": 1}, {"beam_size": 3, "precision": "bf16"},
                                     {"beam_size": 3, "quantize": "int8"}])
def test_measure(tmp_path, options: dict) -> None:
    """The figures describe what was translated: the BLEU and pieces per sentence of the translations the same
    settings give through the Translator, the sentences over the seconds timed."""
    model = str(tiny_model_file(tmp_path / "model.pt"))
    r = measure(model, options, SOURCES, SOURCES, threads=1)
    translator = Translator.load(model, **options)
    hyps = translator.translate(SOURCES)
    pieces = sum(len(ids) for ids in translator.tokenizer.encode_tgt(hyps))
    assert r["bleu"] == pytest.approx(corpus_scores(hyps, SOURCES, ("bleu",))["bleu"])
    assert r["tok_s"] / r["sents_s"] == pytest.approx(pieces / len(SOURCES))
    assert r["sents_s"] * r["seconds"] == pytest.approx(len(SOURCES)) and r["threads"] == 1
    assert r["hyps"] == hyps


def test_measure_the_onnx_backend(tmp_path) -> None:
    """backend=onnx measures the export folder: its translations, the size of its graphs."""
    from conftest import run_script

    model = tiny_model_file(tmp_path / "model.pt")
    assert run_script("export", f"model_file={model}", f"out={tmp_path / 'onnx'}", "check_lines=2") == 0
    r = measure(str(tmp_path / "onnx"), {"beam_size": 2, "backend": "onnx"}, SOURCES, SOURCES, threads=1)
    assert r["hyps"] == Translator.load(str(tmp_path / "onnx"), beam_size=2, backend="onnx").translate(SOURCES)
    graphs = sum(p.stat().st_size for p in (tmp_path / "onnx").glob("*.onnx"))
    assert r["weights_mib"] == pytest.approx(graphs / 2**20) and graphs > 0


def test_a_fresh_process_reports_its_own_peak_memory() -> None:
    """The benchmark's fresh processes report their own peak RSS, not this process's, which holds 1.5 GiB
    more than they need (getrusage's ru_maxrss of a process started by fork/vfork + exec would)."""
    import resource
    import subprocess
    import sys

    import torch

    from conftest import ROOT, script_env

    ballast = torch.ones(3 * 2**27)  # 1.5 GiB, written: resident in this process only
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 > 1536
    code = "import benchmarks.meter as m, resource; print(m.peak_rss_mib(), resource.getrusage(0).ru_maxrss / 1024)"
    own, inherited = map(float, subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=script_env(), check=True,
                                               capture_output=True, text=True).stdout.split())
    assert own < 1024 < 1536 < inherited  # what ru_maxrss would have reported: the parent's peak
    del ballast


def test_table_names_every_row() -> None:
    row = {"sents_s": 10.0, "tok_s": 100.0, "peak_rss_mib": 500, "weights_mib": 18.0, "bleu": 30.0, "chrf": 55.0,
           "threads": 2, "seconds": 1.0}
    results = {"machine": "CPU X, 2 threads", "sentences": 4,
               "numerics": [{"numerics": n, "beam": 5, **row, "sents_s": s, "identical": same}
                            for n, s, same in (("fp32", 10.0, 1.0), ("int8", 20.0, 0.875), ("onnx", 8.0, 0.995))],
               "joey": [{"beam": 5, "sents_s": 2.0, "tok_s": 20.0}],
               "ensemble": [{"model_file": ["a.pt", "b.pt"], "options": {"beam_size": 5}, **row}]}
    text = table(results)
    assert "CPU X" in text and "int8" in text and "2.00x" in text and "10.00x" in text and "a.pt + b.pt" in text
    assert "onnx" in text and "0.80x" in text and "87.5%" in text and "99.5%" in text


def test_each_configuration_reports_its_median_round() -> None:
    rounds = [{"numerics": [{"beam": 1, "sents_s": s, "tok_s": 10 * s}, {"beam": 5, "sents_s": 100 - s, "tok_s": 1}]}
              for s in (10.0, 30.0, 20.0)]
    assert median_round(rounds, "numerics") == [{"beam": 1, "sents_s": 20.0, "tok_s": 200.0},
                                                {"beam": 5, "sents_s": 80.0, "tok_s": 1}]
