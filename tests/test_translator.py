"""Translation as deployed: n-best lists, ensembles, int8 and bf16 inference, interactive use — through
translate.py, evaluate.py and the Python API, all one Translator."""
import json
import selectors
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import MULTI30K, ROOT, one_line_error, random_source, run_script, script_env, tiny_model_file
from seq2seq import modelfile
from seq2seq.data.sources import read_lines
from seq2seq.inference.translator import Hypothesis, Translator

LINES = ["A dog runs through the park.", "", "Two men are talking on a street corner.",
         "A little girl in a pink dress climbs the stairs.", "People.", "A man sleeps on a bench."]


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.en").write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    return tmp_path


def test_n_best_json_lines(model_file, workdir, capfd) -> None:
    """K records per line in input order, ranks 1..K, scores non-increasing; rank 1 is the plain output."""
    assert run_script("translate", f"model_file={model_file}", "input=in.en", "output=plain.de", "beam_size=4") == 0
    assert run_script("translate", f"model_file={model_file}", "input=in.en", "output=nbest.jsonl", "beam_size=4",
                      "n_best=3") == 0
    plain = (workdir / "plain.de").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in (workdir / "nbest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all(set(r) == {"line", "rank", "score", "text"} for r in records)
    assert [r["line"] for r in records] == sorted(r["line"] for r in records)
    for number, line in enumerate(LINES, 1):
        mine = [r for r in records if r["line"] == number]
        if not line:
            assert mine == [{"line": number, "rank": 1, "score": 0.0, "text": ""}]
            continue
        assert [r["rank"] for r in mine] == [1, 2, 3]
        assert mine[0]["text"] == plain[number - 1]
        scores = [r["score"] for r in mine]
        assert scores == sorted(scores, reverse=True) and scores[0] < 0
        assert len({r["text"] for r in mine}) >= 2  # distinct hypotheses (detokenised texts may coincide)


def test_n_best_above_beam_size_is_one_error_line(model_file, workdir, capfd) -> None:
    assert run_script("translate", f"model_file={model_file}", "input=in.en", "output=out.de", "beam_size=2",
                      "n_best=3") == 2
    one_line_error(capfd, "n_best=3", "beam_size=2")
    assert not (workdir / "out.de").exists()


def test_python_api_n_best_first_is_the_translation(model_file) -> None:
    translator = Translator.load(str(model_file), beam_size=3, n_best=3)
    lists = translator.translate_n_best(LINES)
    assert [hyps[0].text for hyps in lists] == translator.translate(LINES)
    assert lists[1] == [Hypothesis("", 0.0)]
    assert all(len(hyps) == 3 and [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
               for line, hyps in zip(LINES, lists) if line)


def test_an_ensemble_of_one_file_listed_twice_translates_as_that_file(model_file, workdir, capfd) -> None:
    for beam in (1, 3):
        assert run_script("translate", f"model_file={model_file}", "input=in.en", f"output=one{beam}.de",
                          f"beam_size={beam}") == 0
        assert run_script("translate", f"model_file=[{model_file},{model_file}]", "input=in.en",
                          f"output=two{beam}.de", f"beam_size={beam}") == 0
        assert (workdir / f"one{beam}.de").read_text() == (workdir / f"two{beam}.de").read_text()
    assert Translator.load([str(model_file)] * 2).info()["models"] == 2


def test_ensemble_members_must_share_the_tokenizer(model_file, workdir, capfd) -> None:
    other = tiny_model_file(workdir / "other.pt", vocab_size=400)
    assert run_script("translate", f"model_file=[{model_file},{other}]", "input=in.en", "output=out.de") == 2
    one_line_error(capfd, str(model_file), str(other), "different tokenizers")
    assert run_script("evaluate", f"model_file=[{model_file},{other}]", f"data.source.path={MULTI30K}") == 2
    one_line_error(capfd, str(model_file), str(other))


@pytest.mark.parametrize("override, named", [("quantize=int4", "quantize"), ("precision=fp16", "precision"),
                                             ("n_best=0", "n_best")])
def test_bad_inference_settings_are_one_error_line(model_file, workdir, capfd, override, named) -> None:
    assert run_script("translate", f"model_file={model_file}", "input=in.en", "output=out.de", override) == 2
    one_line_error(capfd, named)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_a_conditional_gru_model_file_holds_the_whole_model(tmp_path, layer_norm: bool) -> None:
    """model=gru_cgru in a model file (weights_only: plain data), copied away from where it was written: it
    loads as the config it was trained with, every weight as saved (GRU_2's and layer norm's too)."""
    written = tiny_model_file(tmp_path / "written.pt", overrides=("model=gru_cgru", f"model.layer_norm={layer_norm}"))
    stored = torch.load(written, weights_only=True)
    moved = tmp_path / "elsewhere" / "model.pt"
    moved.parent.mkdir()
    written.rename(moved)
    model, tokenizer, _ = modelfile.load_model(moved)
    assert stored["model"]["decoder"] == "cgru" and model.config.decoder == "cgru" and model.decoder.conditional
    assert model.config.layer_norm is layer_norm and ("decoder.context_rnn.ln_gain_ih_l0" in stored["state_dict"]) is layer_norm
    assert model.state_dict().keys() == stored["state_dict"].keys()
    for key, value in stored["state_dict"].items():
        assert torch.equal(model.state_dict()[key], value), key
    src, lens = random_source([4, 2], tokenizer.src_vocab_size)
    assert model(src, lens, src).shape == (2, 4, tokenizer.tgt_vocab_size)


def test_a_conditional_gru_translates_in_every_numerics_and_in_ensembles(model_file, workdir, capfd) -> None:
    """fp32, bf16, int8 and ensembles (with itself: as it alone; with a Luong model) through translate.py;
    layer-normalised, int8 is refused with one error line (torch.ao converts nn.GRU's products only)."""
    cgru = tiny_model_file(workdir / "cgru.pt", overrides=("model=gru_cgru",))
    outputs = {}
    for name, options in {"fp32": [], "bf16": ["precision=bf16"], "int8": ["quantize=int8"],
                          "twice": [], "mixed": []}.items():
        files = {"twice": f"[{cgru},{cgru}]", "mixed": f"[{cgru},{model_file}]"}.get(name, str(cgru))
        assert run_script("translate", f"model_file={files}", "input=in.en", f"output={name}.de", "beam_size=3",
                          *options) == 0
        outputs[name] = (workdir / f"{name}.de").read_text(encoding="utf-8").splitlines()
        assert len(outputs[name]) == len(LINES) and all(bool(a) == bool(b) for a, b in zip(outputs[name], LINES))
    assert outputs["twice"] == outputs["fp32"]
    capfd.readouterr()
    normalised = tiny_model_file(workdir / "cgru_ln.pt", overrides=("model=gru_cgru", "model.layer_norm=true"))
    assert run_script("translate", f"model_file={normalised}", "input=in.en", "output=out.de", "quantize=int8") == 2
    one_line_error(capfd, "quantize=int8", "model.layer_norm=true")
    assert not (workdir / "out.de").exists()


@pytest.mark.slow
def test_int8_and_bf16_translate_like_fp32(trained_run: dict) -> None:
    """On the 1,000 test sentences, beam 5, int8 (and bf16) output equals fp32 output on >= 80% of the lines.

    How close a tiny model's int8 search stays to fp32 depends on that model's margins: training arithmetic
    that is the same up to rounding (logits at non-pad positions only) moved int8 from above 900 to 857-861
    for this fixture, and the v2 fixture model gives 731. Per-tensor int8 with 7-bit activations, before, gave 846.
    """
    lines = read_lines(MULTI30K / "test_2016_flickr.en.gz")
    fp32 = Translator.load(str(trained_run["model_file"]), beam_size=5).translate(lines)
    assert len(set(fp32)) > 100  # a model whose output depends on its input (tiny: 125 distinct lines)
    for option in ({"quantize": "int8"}, {"precision": "bf16"}):
        translator = Translator.load(str(trained_run["model_file"]), beam_size=5, **option)
        same = sum(a == b for a, b in zip(translator.translate(lines), fp32))
        assert same >= 800, (option, same)
    assert Translator.load(str(trained_run["model_file"]), quantize="int8").info()["quantize"] == "int8"


@pytest.mark.slow
def test_evaluate_takes_the_translation_options(trained_run: dict, capfd) -> None:
    model = trained_run["model_file"]
    assert run_script("evaluate", f"model_file=[{model},{model}]", "split=val", "data.eval_limit=20",
                      f"data.source.path={MULTI30K}", "json=true", "beam_size=2", "quantize=int8") == 0
    scores = json.loads(capfd.readouterr().out)
    assert scores["sentences"] == 20 and scores["bleu"] >= 0


@pytest.mark.slow
def test_interactive_prints_each_translation_before_stdin_closes(model_file) -> None:
    """Through a pipe with interactive=true: each line's translation arrives while stdin is still open."""
    expected = Translator.load(str(model_file)).translate(["A dog runs.", "Two cats sleep."])
    process = subprocess.Popen([sys.executable, "scripts/translate.py", f"model_file={model_file}", "interactive=true"],
                               cwd=ROOT, env=script_env(), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    try:
        for line, translation in zip(["A dog runs.", "Two cats sleep."], expected):
            process.stdin.write(line.encode() + b"\n")
            process.stdin.flush()
            assert selector.select(timeout=120), "no translation while stdin stays open"
            assert process.stdout.readline().decode().rstrip("\n") == translation
        process.stdin.close()
        assert process.wait(timeout=60) == 0 and process.stdout.read() == b""
    finally:
        process.kill()


@pytest.mark.slow
def test_tune_alpha_stores_the_length_penalty_with_the_best_val_bleu(trained_run: dict, tmp_path) -> None:
    """train.py's tune_alpha: every listed alpha decodes val, the best BLEU's alpha (first on ties) becomes
    the model file's default, so that a translator loaded from the file decodes with it."""
    import shutil

    import datasets
    import sacrebleu

    from seq2seq.training.train import tune_alpha

    path = Path(shutil.copy(trained_run["model_file"], tmp_path / "model.pt"))
    srcs, refs = read_lines(MULTI30K / "val.en.gz")[:150], read_lines(MULTI30K / "val.de.gz")[:150]
    alphas = [0.0, 1.0, 4.0]
    bleu = [sacrebleu.corpus_bleu(Translator.load(str(path), alpha=a).translate(srcs), [refs]).score for a in alphas]
    assert len(set(bleu)) > 1, f"the alphas must change the output for this test to mean anything: {bleu}"
    val = datasets.Dataset.from_dict({"src": srcs, "tgt": refs})
    best = tune_alpha(path, val, alphas, "de", "cpu")
    assert best == alphas[bleu.index(max(bleu))]
    reloaded = Translator.load(str(path))
    assert reloaded.decoding.alpha == best
    assert reloaded.translate(srcs[:40]) == Translator.load(str(path), alpha=best).translate(srcs[:40])
