"""Pictures and reports: training curves, attention heat-maps, the evaluation report."""
import csv
import gzip
from pathlib import Path

import matplotlib.image as mpimg
import pytest
import torch
from omegaconf import OmegaConf

from conftest import MULTI30K, run_script
from seq2seq import modelfile
from seq2seq.config import ModelConfig
from seq2seq.data.tokenizer import PAD, Tokenizer
from seq2seq.evaluation import METRICS, corpus_scores
from seq2seq.inference.translator import Translator
from seq2seq.model import EncoderDecoder
from seq2seq.plots import PANELS, attention_map, save, training_curves
from seq2seq.report import write_report

LINES = ["A dog runs through the grass.", "", "Two men are playing football on a green field.", "A woman sings."]


def assert_picture(path: Path, min_bytes: int, min_height: int, min_width: int) -> None:
    assert path.is_file(), path
    assert path.stat().st_size > min_bytes, f"{path}: {path.stat().st_size} bytes"
    height, width = mpimg.imread(path).shape[:2]
    assert height >= min_height and width >= min_width, (path, height, width)


@pytest.mark.slow
def test_training_run_draws_its_curves(trained_run):
    run_dir = trained_run["run_dir"]
    assert_picture(run_dir / "curves.png", 40_000, 600, 1200)  # written by the callback in conf/callbacks

    metrics = run_dir / "logs" / "metrics.csv"
    with open(metrics, newline="") as f:
        bleu = [float(row["val/bleu"]) for row in csv.DictReader(f) if row["val/bleu"]]
    assert len(bleu) == 2  # two epochs, one validation each
    fig = training_curves(metrics)
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert list(axes) == [title for title, *_ in PANELS]
    for title, ax in axes.items():
        assert ax.get_xlabel() == "step" and ax.get_ylabel(), title
        assert ax.get_lines(), f"panel {title!r} has no curve"
    assert [line.get_label() for line in axes["loss"].get_lines()] == ["train", "val"]
    assert list(axes["validation BLEU"].get_lines()[0].get_ydata()) == pytest.approx(bleu)
    assert axes["perplexity"].get_yscale() == "log"


def test_curves_of_a_run_without_validation_yet(tmp_path):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,lr-Adam,step,train/loss,train/ppl\n,0.001,49,,\n0,,49,5.9,220.5\n0,,99,5.1,120.0\n")
    fig = training_curves(metrics)
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert list(axes["loss"].get_lines()[0].get_xdata()) == [49, 99]
    for empty in ("validation BLEU", "validation chrF", "throughput"):
        assert not axes[empty].get_lines()
        assert [t.get_text() for t in axes[empty].texts] == ["not logged (yet)"]
    assert_picture(save(fig, tmp_path / "sub" / "curves.png"), 20_000, 600, 1200)


@pytest.mark.slow
def test_translate_saves_attention_maps_of_chosen_lines(trained_run, tmp_path, monkeypatch, capsys):
    source, maps = tmp_path / "in.en", tmp_path / "maps"
    source.write_text("\n".join(LINES) + "\n")
    assert run_script("translate", f"model_file={trained_run['model_file']}", f"input={source}",
                      "attention_lines=[1,2,3,9]", f"attention_dir={maps}") == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == len(LINES) and out.splitlines()[1] == ""
    assert sorted(p.name for p in maps.iterdir()) == ["line1.png", "line3.png"]  # line 2 is empty
    assert "input line 2 is empty" in err and "[9]" in err
    assert_picture(maps / "line3.png", 10_000, 300, 500)

    translator = Translator.load(trained_run["model_file"])
    a = translator.attention([LINES[2]])[0]
    assert a.translation == out.splitlines()[2] == translator.translate([LINES[2]])[0]
    assert a.src_pieces[-1] == a.tgt_pieces[-1] == "</s>"
    assert "".join(a.src_pieces[:-1]).replace("\u2581", " ").strip() == LINES[2]
    assert a.weights.shape == (len(a.tgt_pieces), len(a.src_pieces))
    assert torch.allclose(a.weights.sum(1), torch.ones(len(a.tgt_pieces)), atol=1e-4)  # a distribution per row
    fig = attention_map(a.src_pieces, a.tgt_pieces, a.weights)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == a.src_pieces
    assert [t.get_text() for t in ax.get_yticklabels()] == a.tgt_pieces
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("source pieces", "target pieces")


@pytest.mark.slow
def test_plain_model_has_no_attention_to_draw(trained_run, tmp_path, monkeypatch, capsys):
    blob = modelfile.read_contents(trained_run["model_file"])
    config = {**OmegaConf.to_container(trained_run["cfg"].model, resolve=True), "attention": "none"}
    tokenizer = Tokenizer.from_state(blob["tokenizer"])
    model = EncoderDecoder(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, PAD, ModelConfig(**config))
    plain = tmp_path / "plain.pt"
    modelfile.save(plain, config, model.state_dict(), blob["tokenizer"], {"beam_size": 1, "max_len": 5})
    source, maps = tmp_path / "in.en", tmp_path / "maps"
    source.write_text(LINES[0] + "\n")

    assert run_script("translate", f"model_file={plain}", f"input={source}", "attention_lines=[1]",
                      f"attention_dir={maps}") == 0
    out, err = capsys.readouterr()
    assert "has no attention" in err and len(out.splitlines()) == 1
    assert not maps.exists()
    with pytest.raises(ValueError, match="no attention"):
        Translator.load(plain).attention([LINES[0]])


def first_lines(split: str, lang: str, n: int) -> list[str]:
    with gzip.open(MULTI30K / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
        return [next(f).rstrip("\n") for _ in range(n)]


@pytest.mark.slow
def test_evaluate_writes_a_markdown_report(trained_run, tmp_path, monkeypatch, capsys):
    hyps = (trained_run["run_dir"] / "test.hyp").read_text(encoding="utf-8").splitlines()
    refs, srcs = first_lines("test_2016_flickr", "de", len(hyps)), first_lines("test_2016_flickr", "en", len(hyps))
    (tmp_path / "ref.de").write_text("\n".join(refs) + "\n")
    (tmp_path / "src.en").write_text("\n".join(srcs) + "\n")
    report = tmp_path / "out" / "report.md"  # the folder is made
    assert run_script("evaluate", f"hyp={trained_run['run_dir'] / 'test.hyp'}", f"ref={tmp_path / 'ref.de'}",
                      f"src={tmp_path / 'src.en'}", f"report={report}") == 0

    text = report.read_text()
    scores = corpus_scores(hyps, refs)
    assert "| BLEU (tokenized, lowercased" in text
    for name in ("bleu", "bleu_lit", "chrf", "ter"):
        assert scores[f"{name}_signature"].replace("|", "\\|") in text
        assert f"| {scores[name]:.2f} |" in text
    assert "![BLEU and chrF by source length](report.buckets.png)" in text
    assert_picture(report.parent / "report.buckets.png", 10_000, 300, 500)
    buckets = text.split("## Scores by source length")[1].split("##")[0]
    counts = [int(row.split("|")[2]) for row in buckets.splitlines() if row.startswith("| ") and "-" in row[:8]]
    assert sum(counts) == len(hyps)

    worst = [row for row in text.split("worst sentences")[1].splitlines()
             if row.startswith("| ") and not row.startswith("| line |")]
    assert len(worst) == 10
    chrf = METRICS["chrf"]()
    lowest = sorted(chrf.sentence_score(h, [r]).score for h, r in zip(hyps, refs))[:10]
    assert [float(row.split("|")[2]) for row in worst] == pytest.approx(lowest, abs=0.05)
    line = int(worst[0].split("|")[1])
    assert worst[0].strip("| ").split(" | ")[2:] == [srcs[line - 1], refs[line - 1], hyps[line - 1]]


@pytest.mark.slow
def test_evaluate_model_mode_writes_an_html_report(trained_run, tmp_path, monkeypatch, capsys):
    report = tmp_path / "report.html"
    assert run_script("evaluate", f"model_file={trained_run['model_file']}", f"data.source.path={MULTI30K}",
                      "data.eval_limit=40", "beam_size=1", f"report={report}", "json=true") == 0
    out, _ = capsys.readouterr()
    text = report.read_text()
    assert '"sentences": 40' in out
    assert text.count("data:image/png;base64,") == 1 and "<th>source</th>" in text
    assert text.split("worst sentences")[1].count("<tr><td>") == 10
    assert not list(tmp_path.glob("*.png"))  # the chart is inside the HTML file


def test_report_without_sources_and_bad_names(tmp_path):
    hyps, refs = ["ein Hund", "eine Katze", "x"], ["ein Hund läuft", "eine Katze", "ein Haus"]
    written = write_report(tmp_path / "r.md", hyps, refs, corpus_scores(hyps, refs))
    assert written == [tmp_path / "r.md"]
    text = written[0].read_text()
    assert "src=FILE" in text and "source |" not in text
    assert "| 3 | 0.0 | ein Haus | x |" in text  # the worst first
    with pytest.raises(ValueError, match=r"\.md"):
        write_report(tmp_path / "r.txt", hyps, refs, corpus_scores(hyps, refs))
