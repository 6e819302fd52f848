"""The benchmark measures what it says: timed training steps, FLOPs per token, translation speed."""
import pytest

from benchmarks.speed import run, table
from conftest import MULTI30K, compose_config

pytestmark = pytest.mark.slow  # every test here trains a model or starts processes


def test_benchmark_measures_training_and_translation(trained_run, tmp_path) -> None:
    vocab, emb = 500, 32
    cfg = compose_config("benchmarks/speed", [
        f"model.input_size={emb}", "model.hidden_size=32", f"data.tokenizer.vocab_size={vocab}",
        "data.train_limit=2000", "data.eval_limit=40", f"data.source.path={MULTI30K}", "warmup_steps=2",
        "steps=3", "precisions=[32-true]", "beams=[1,2]", f"model_file={trained_run['model_file']}",
        f"work_dir={tmp_path}", f"output={tmp_path / 'benchmark.json'}"])
    results = run(cfg)

    (train,) = results["ours_train"]
    assert train["steps"] == 3 and train["seconds"] > 0
    assert train["src_tgt_tok_s"] > train["tgt_tok_s"] > 0
    # the tied output projection alone costs 2·V·E FLOPs per target token forward and twice that backward
    assert train["flops_per_tgt_token"] > 6 * vocab * emb
    assert 0 < train["mfu"] < 1
    shares = train["profile"]  # torch.profiler's costliest ops, costliest first
    assert len(shares) == 10 and 0.3 < sum(shares.values()) <= 1 and list(shares.values()) == sorted(shares.values())[::-1]
    assert {"aten::mm", "aten::addmm"} & set(shares)  # a GRU model's step spends most in its matmuls
    assert [t["beam"] for t in results["ours_translate"]] == [1, 2]
    assert all(t["sents_s"] > 0 and t["words_per_sent"] > 0 for t in results["ours_translate"])
    text = table(results)
    rows = ("train tgt tok/s (32-true)", "MFU % (32-true)", "profile (32-true), self CPU time: ",
            "translate sents/s (beam 2)", "peak RSS MiB")
    for row in rows:
        assert row in text
    assert not [line for line in text.splitlines() if line.endswith("x")]  # no Joey, so no ours/Joey ratios


def test_recipe_curve_reads_each_validation_with_its_wall_minute(trained_run) -> None:
    """benchmarks/recipe_curve.py: one point per val/bleu the run logged, minutes from its start, in order;
    at a minute, the last value logged by then."""
    from benchmarks.recipe_curve import at_minutes, val_bleu_by_minute
    from seq2seq.plots import read_metrics

    points = val_bleu_by_minute(trained_run["run_dir"])
    _, logged = read_metrics(trained_run["run_dir"] / "logs" / "metrics.csv")["val/bleu"]
    assert [b for _, b in points] == pytest.approx(logged)
    minutes = [t for t, _ in points]
    assert minutes == sorted(minutes) and 0 < minutes[0] < 30
    assert at_minutes(points, [0.0, minutes[-1], 1e6]) == {0.0: None, minutes[-1]: points[-1][1], 1e6: points[-1][1]}


def test_faithfulness_reads_every_epochs_validation(trained_run) -> None:
    """benchmarks/faithfulness.py: epoch -> (val loss, val BLEU) for each epoch the run trained, as logged."""
    from benchmarks.faithfulness import validations
    from seq2seq.plots import read_metrics

    curve = validations(trained_run["run_dir"])
    metrics = read_metrics(trained_run["run_dir"] / "logs" / "metrics.csv")
    assert sorted(curve) == [0, 1]
    assert [curve[e][0] for e in (0, 1)] == pytest.approx(metrics["val/loss"][1])
    assert [curve[e][1] for e in (0, 1)] == pytest.approx(metrics["val/bleu"][1])
