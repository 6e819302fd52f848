"""scripts/translate.py and scripts/evaluate.py as a user runs them, and the Python Translator API.

Each script run starts a fresh interpreter (several seconds of imports), so the module starts all of
them at once and the tests read their results.
"""
import json
import subprocess
import sys

import pytest
import sacrebleu

from conftest import MULTI30K, ROOT, script_env
from seq2seq import Translator
from seq2seq.data.sources import read_lines
from seq2seq.evaluation import corpus_scores, literature_tokenize

pytestmark = pytest.mark.slow  # every test here trains a model or starts processes

LINES = ["A dog runs through the park.", "", "Two men are talking on a street corner.", "   ",
         "A little girl in a pink dress climbs the stairs.", "People.", "A man sleeps."]
EVAL_LIMIT = 20


def run_all(commands: dict[str, tuple[list[str], bytes | None]]) -> dict[str, subprocess.CompletedProcess]:
    """{name: ([script, overrides...], stdin)} -> {name: finished run}; `python scripts/<script>.py
    overrides...` from the repository root, as the README shows, all started before any is awaited."""
    started = {name: subprocess.Popen([sys.executable, f"scripts/{script}.py", *overrides], cwd=ROOT, env=script_env(),
                                      stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for name, ([script, *overrides], stdin) in commands.items()}
    done = {}
    for name, process in started.items():
        out, err = process.communicate(commands[name][1], timeout=300)
        done[name] = subprocess.CompletedProcess(process.args, process.returncode, out.decode(), err.decode())
    return done


@pytest.fixture(scope="module")
def work(trained_run: dict, tmp_path_factory) -> dict:
    """Input files, and every script run of this module, finished."""
    folder = tmp_path_factory.mktemp("scripts")
    model = f"model_file={trained_run['model_file']}"
    crlf_input = "".join(line + "\r\n" for line in LINES).encode()
    (folder / "in.en").write_bytes(crlf_input)
    (folder / "bad.en").write_bytes(b"A dog.\nA cat.\nA caf\xe9.\nA bird.\n")
    hyp = trained_run["run_dir"] / "test.hyp"
    refs = read_lines(MULTI30K / "test_2016_flickr.de.gz")[: len(read_lines(hyp))]
    (folder / "ref.de").write_text("".join(r + "\n" for r in refs), encoding="utf-8")
    runs = run_all({
        "file": (["translate", model, f"input={folder / 'in.en'}", f"output={folder / 'out.de'}"], None),
        "stdin": (["translate", model], crlf_input),
        "bad_input": (["translate", model, f"input={folder / 'bad.en'}", f"output={folder / 'bad.de'}"], None),
        "score_files": (["evaluate", f"hyp={hyp}", f"ref={folder / 'ref.de'}", "json=true"], None),
        "score_files_plain": (["evaluate", f"hyp={hyp}", f"ref={folder / 'ref.de'}"], None),
        "score_model": (["evaluate", model, "split=val", f"data.eval_limit={EVAL_LIMIT}",
                         f"data.source.path={MULTI30K}", f"output={folder / 'val.hyp'}", "json=true"], None),
    })
    return {"folder": folder, "runs": runs, "hyp": hyp, "refs": refs,
            "translator": Translator.load(trained_run["model_file"])}


def succeeded(work: dict, name: str) -> subprocess.CompletedProcess:
    run = work["runs"][name]
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_translate_file_keeps_lines_in_order(work: dict) -> None:
    succeeded(work, "file")
    out = (work["folder"] / "out.de").read_bytes()
    assert b"\r" not in out and out.endswith(b"\n")
    lines = out.decode("utf-8").split("\n")[:-1]
    assert len(lines) == len(LINES)
    assert [bool(line) for line in lines] == [bool(line.strip()) for line in LINES]  # blank in, blank out
    alone = [work["translator"].translate([line])[0] for line in LINES]  # each line by itself: order is kept
    assert lines == alone
    assert len(set(lines)) >= 4, "distinct outputs, else the order check shows nothing"
    assert not list(work["folder"].glob(".out.de.tmp*"))


def test_translate_stdin_to_stdout(work: dict) -> None:
    run = succeeded(work, "stdin")
    assert run.stdout == (work["folder"] / "out.de").read_text(encoding="utf-8")


def test_failed_translation_leaves_no_output_file(work: dict) -> None:
    run = work["runs"]["bad_input"]
    assert run.returncode == 2
    assert f"error: {work['folder'] / 'bad.en'}:3: not valid UTF-8" in run.stderr
    assert "Traceback" not in run.stderr
    assert not list(work["folder"].glob("bad.de*"))


def test_evaluate_files_matches_sacrebleu(work: dict) -> None:
    scores = json.loads(succeeded(work, "score_files").stdout)
    hyps, refs = read_lines(work["hyp"]), work["refs"]
    assert scores["sentences"] == len(hyps) == len(refs) > 100
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert scores["ter"] == pytest.approx(sacrebleu.corpus_ter(hyps, [refs]).score)
    assert scores["bleu_signature"].startswith("nrefs:1|") and scores["chrf"] > 5
    lit = sacrebleu.corpus_bleu(literature_tokenize(hyps), [literature_tokenize(refs)], tokenize="none").score
    assert scores["bleu_lit"] == pytest.approx(lit) and lit != pytest.approx(scores["bleu"])
    plain = succeeded(work, "score_files_plain").stdout.splitlines()
    assert [line.split()[0] for line in plain] == ["BLEU", "BLEU_LIT", "CHRF", "TER"]
    assert f"{scores['bleu_lit']:6.2f}  {scores['bleu_lit_signature']}" in plain[1] and "not comparable" in plain[1]


def test_evaluate_model_on_a_split(work: dict) -> None:
    scores = json.loads(succeeded(work, "score_model").stdout)
    src, refs = (read_lines(MULTI30K / f"val.{lang}.gz")[:EVAL_LIMIT] for lang in ("en", "de"))
    hyps = work["translator"].translate(src)
    assert read_lines(work["folder"] / "val.hyp") == hyps
    assert scores["sentences"] == EVAL_LIMIT
    expected = corpus_scores(hyps, refs)
    for name in ("bleu", "bleu_lit", "chrf", "ter"):
        assert scores[name] == pytest.approx(expected[name])
        assert scores[f"{name}_signature"] == expected[f"{name}_signature"]


def test_python_api(trained_run: dict) -> None:
    translator = Translator.load(trained_run["model_file"], beam_size=1)
    out = translator.translate(["A dog runs.", "", "Two men are talking."])
    assert len(out) == 3 and all(isinstance(s, str) for s in out)
    assert out[1] == "" and out[0] and out[2]
    assert translator.translate([]) == []
