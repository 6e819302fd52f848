"""Bad input ends a script with one clear line (file, line or key), a non-zero exit and no output;
odd but valid input (empty lines, CRLF, very long lines, unseen scripts) simply works."""
import os
from pathlib import Path

import pytest
import torch

from conftest import MULTI30K, TINY, compose_config, one_line_error, run_script, tiny_tokenizer
from seq2seq import modelfile
from seq2seq.cli import check_command_line, user_errors
from seq2seq.data.sources import read_lines
from seq2seq.inference.translator import Translator
from seq2seq.training.train import train


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# --- translate / evaluate ------------------------------------------------------------------------

@pytest.mark.parametrize("content, where", [
    (None, "file not found"),
    (b"", "file is empty"),
    (b"A dog.\nTwo cats.\nCaf\xe9 au lait\nfine\n", "in.en:3: not valid UTF-8"),
])
def test_translate_refuses_a_missing_empty_or_non_utf8_input(model_file, workdir, capfd, content, where):
    if content is not None:
        write(workdir / "in.en", content)
    assert run_script("translate", f"model_file={model_file}", "input=in.en", "output=out.de") == 2
    one_line_error(capfd, "in.en", where)
    assert sorted(p.name for p in workdir.iterdir()) == (["in.en"] if content is not None else [])


@pytest.mark.parametrize("override, named", [
    ("beam_size=0", "beam_size"), ("alpha=-1", "alpha"), ("max_source_len=0", "max_source_len")])
def test_translate_refuses_invalid_settings(model_file, workdir, capfd, override, named):
    write(workdir / "in.en", "A dog.\n")
    assert run_script("translate", f"model_file={model_file}", "input=in.en", "output=out.de", override) == 2
    one_line_error(capfd, named)
    assert not (workdir / "out.de").exists()


@pytest.mark.parametrize("script, override, named", [
    ("translate", "beam=3", "'beam'"), ("evaluate", "reprot=r.md", "'reprot'"),
    ("train", "optim.lrr=1", "'optim.lrr'"), ("train", "model.hidden_size=abc", "model.hidden_size"),
    ("train", "model=gru_lstm", "gru_lstm"), ("train", "model.hidden_size=256,512", "hidden_size")])
def test_a_bad_command_line_is_one_error_line(model_file, workdir, capfd, script, override, named):
    """Unknown keys, values of the wrong type, sweeps without -m: one line naming the key, exit 2 (Hydra: exit 1)."""
    write(workdir / "in.en", "A dog.\n")
    args = [f"model_file={model_file}", "input=in.en", "output=out.de"] if script == "translate" else []
    with pytest.raises(SystemExit) as exit_:
        check_command_line(script, [*args, override])
    assert exit_.value.code == 2
    one_line_error(capfd, named)
    assert [p.name for p in workdir.iterdir()] == ["in.en"]


def test_a_missing_required_setting_is_named(capfd):
    with pytest.raises(SystemExit) as exit_:
        check_command_line("translate", ["input=in.en"])
    assert exit_.value.code == 2
    one_line_error(capfd, "model_file")


def test_evaluate_refuses_files_of_different_lengths(workdir, capfd):
    write(workdir / "hyp.de", "ein Hund\nzwei Katzen\n")
    write(workdir / "ref.de", "ein Hund\n")
    assert run_script("evaluate", "hyp=hyp.de", "ref=ref.de") == 2
    one_line_error(capfd, "hyp.de", "ref.de", "2", "1")


def pickle_bomb(path: Path, marker: Path) -> Path:
    """A PyTorch archive whose unpickling would run `touch marker`."""
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"format": modelfile.FORMAT, "state_dict": {}, "x": Payload()}, path)
    return path


def test_a_model_file_carrying_code_is_refused_without_running_it(workdir, capfd):
    marker = workdir / "payload-ran"
    bomb = pickle_bomb(workdir / "bomb.pt", marker)
    torch.load(bomb, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()
    marker.unlink()
    write(workdir / "in.en", "A dog.\n")
    assert run_script("translate", "model_file=bomb.pt", "input=in.en", "output=out.de") == 2
    one_line_error(capfd, "bomb.pt", "refused", "system")
    assert not marker.exists() and not (workdir / "out.de").exists()


def test_model_files_that_are_not_ours_or_damaged_are_refused(model_file, workdir, capfd):
    write(workdir / "text.pt", "just some text\n")
    torch.save({"weights": torch.ones(2)}, workdir / "other.pt")
    write(workdir / "cut.pt", model_file.read_bytes()[: model_file.stat().st_size // 2])
    write(workdir / "in.en", "A dog.\n")
    for name, why in (("text.pt", "not a model file"), ("other.pt", "not a seq2seq model file"),
                      ("cut.pt", "truncated"), ("none.pt", "not found")):
        assert run_script("translate", f"model_file={name}", "input=in.en", "output=out.de") == 2
        one_line_error(capfd, name, why)
    assert not (workdir / "out.de").exists()


def test_a_tokenizer_that_does_not_fit_the_weights_is_refused(model_file, workdir, capfd):
    blob = modelfile.read_contents(model_file)
    modelfile.save(workdir / "mixed.pt", blob["model"], blob["state_dict"], tiny_tokenizer(400).state(),
                   blob["decoding"])
    write(workdir / "in.en", "A dog.\n")
    assert run_script("translate", "model_file=mixed.pt", "input=in.en", "output=out.de") == 2
    one_line_error(capfd, "mixed.pt", "do not fit", "embed")
    assert not (workdir / "out.de").exists()


def test_odd_but_valid_lines_are_translated(model_file, workdir, capfd):
    lines = ["A dog runs.", "", "Ein 🐶 läuft: 犬が走る。 Собака бежит. ☃︎ 🇩🇪", " ".join(["word"] * 1000), "Two cats."]
    write(workdir / "in.en", "".join(line + "\r\n" for line in lines))  # CRLF line endings
    assert run_script("translate", f"model_file={model_file}", "input=in.en", "output=out.de",
                  "max_source_len=50") == 0
    out = (workdir / "out.de").read_bytes().decode("utf-8")
    assert out.count("\n") == len(lines) and "\r" not in out
    assert out.split("\n")[1] == ""  # an empty line gives an empty line
    err = capfd.readouterr().err
    assert "input line 4 has" in err and "max_source_len" in err


def test_streaming_reads_input_a_chunk_at_a_time(model_file):
    translator, pulled = Translator.load(str(model_file), beam_size=1, max_len=5), []

    def lines():
        for n in range(1000):
            pulled.append(n)
            yield f"line {n}"

    stream = translator.stream(lines(), chunk=100, progress=False)
    next(stream)
    assert len(pulled) <= 101
    assert sum(1 for _ in stream) == 999


# --- training data and settings --------------------------------------------------------------

def corpus(folder: Path, **files: bytes) -> Path:
    """A text corpus folder: train/val/test .en/.de from Multi30k, except `files` ({"train_de": b"..."})."""
    folder.mkdir()
    for split in ("train", "val"):
        for lang in ("en", "de"):
            lines = read_lines(MULTI30K / f"{split}.{lang}.gz")[:200]
            write(folder / f"{split}.{lang}", files.get(f"{split}_{lang}", "\n".join(lines).encode() + b"\n"))
    return folder


def train_exit(run_dir: Path, data: Path, capfd, *overrides: str) -> int:
    """Exit status of a training run as scripts/train.py runs it (bad input: one-line error, status 2)."""
    args = [*TINY, f"data.source.path={data}", "data.source.splits.test=val", "trainer.max_epochs=1", *overrides]
    capfd.readouterr()
    try:
        check_command_line("train", args)  # the script's first step: a value of the wrong type stops here
        user_errors(train)(compose_config("train", args, run_dir))
        return 0
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("files, names", [
    ({"train_de": b"eins\nzwei\n"}, ["train.en", "train.de", "200 lines", "has 2"]),
    ({"train_en": b"A dog.\n\xff\xfe\n"}, ["train.en:2", "not valid UTF-8"]),
    ({"val_de": b""}, ["val.de", "empty"]),
])
def test_training_refuses_bad_data_files(tmp_path, capfd, files, names):
    run_dir = tmp_path / "run"
    assert train_exit(run_dir, corpus(tmp_path / "data", **files), capfd) == 2
    one_line_error(capfd, *names)
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "model.pt").exists()


@pytest.mark.parametrize("override, named", [
    ("model.dropout=1.5", "model.dropout"), ("model.hidden_size=0", "model.hidden_size"),
    ("optim.lr=-1", "optim.lr"), ("optim.schedule=linear", "optim.schedule"), ("decoding.beam_size=0", "beam_size"),
    ("label_smoothing=1.5", "label_smoothing"), ("average_checkpoints=-1", "average_checkpoints"),
    ("tune_alpha=[0.6,-1]", "tune_alpha"), ("tune_alpha=0.6", "tune_alpha"),
    ("data.max_tokens=10", "data.max_tokens"), ("trainer.precision=bf17", "bf17"),
    ("callbacks.progress.every_n_steps=0", "callbacks.progress.every_n_steps")])
def test_training_refuses_invalid_settings_before_any_work(tmp_path, capfd, override, named):
    """Every setting is checked at start-up: one line naming it, exit 2, before the tokenizer is trained."""
    run_dir = tmp_path / "run"
    assert train_exit(run_dir, corpus(tmp_path / "data"), capfd, override) == 2
    one_line_error(capfd, named)
    assert not (run_dir / "tokenizer").exists() and not (run_dir / "model.pt").exists()


def test_a_bug_keeps_its_traceback(tmp_path, capfd, monkeypatch):
    """Only our own input and settings errors become `error:` lines: a ValueError from inside torch or
    Lightning (here: a forward pass that fails) propagates with its traceback."""
    from seq2seq.model import EncoderDecoder

    def broken(*args, **kwargs):
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(EncoderDecoder, "forward", broken)
    with pytest.raises(ValueError, match="a bug deep inside"):
        train_exit(tmp_path / "run", corpus(tmp_path / "data"), capfd)
