"""Forced target prefixes, sampling and alignments through the Translator and translate.py: prefixes as
SentencePiece normalizes them in greedy, beam, n-best and ensembles; input_format=jsonl; samples that do not
depend on their batch; alignments=true on a model whose attention pattern is known."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import FIXTURES, one_line_error, run_script
from seq2seq import modelfile
from seq2seq.config import DecodingConfig, ModelConfig
from seq2seq.data.tokenizer import PAD
from seq2seq.inference.translator import AlignedHypothesis, Translator, word_numbers
from seq2seq.model import EncoderDecoder
from seq2seq.model.attention import Memory

LINES = ["A dog runs through the park.", "", "Two men are talking on a street corner.",
         "A little girl in a pink dress climbs the stairs.", "People.", "A man sleeps on a bench."]
# each prefix and the text SentencePiece's normalization makes of it (spaces squeezed, NFKC)
PREFIXES = ["Ein Hund", "Ein", "  Zwei   Männer ", "Ｅｉｎ kleines", "", None]
NORMALIZED = {"Ein Hund": "Ein Hund", "  Zwei   Männer ": "Zwei Männer", "Ｅｉｎ kleines": "Ein kleines"}


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("members, beam_size, n_best", [(1, 1, 1), (1, 3, 3), (2, 1, 1), (2, 3, 2)])
def test_every_hypothesis_begins_with_the_prefix_as_sentencepiece_normalizes_it(model_file, members: int,
                                                                                 beam_size: int, n_best: int) -> None:
    """Greedy, beam with n-best lists, ensembles: the forced pieces are SentencePiece's encoding of the prefix and
    the text begins with its normalized form; a blank line stays blank; no prefix ("" or None) is no forcing."""
    translator = Translator.load([str(model_file)] * members, beam_size=beam_size, n_best=n_best)
    forced = translator.translate_n_best(LINES, PREFIXES, alignments=True)
    free = translator.translate_n_best(LINES)
    sp = translator.tokenizer.tgt
    for line, prefix, hyps, unforced in zip(LINES, PREFIXES, forced, free):
        if not line:
            assert [h.text for h in hyps] == [""]
        elif prefix:
            pieces = sp.encode(prefix, out_type=str)
            assert len(hyps) == n_best
            for h in hyps:
                assert h.alignment.tgt_pieces[: len(pieces)] == pieces
                assert h.text.startswith(NORMALIZED[prefix]), (prefix, h.text)
            assert not unforced[0].text.startswith(NORMALIZED[prefix])  # the prefix changed something
        else:
            assert [(h.text, h.score) for h in hyps] == [(u.text, u.score) for u in unforced]


def test_a_prefix_the_search_would_have_chosen_keeps_its_translation_and_score() -> None:
    """Greedy (the v2 fixture model, trained): forcing the beginning of a line's own translation, as text, gives
    the same text and score: the score includes the forced pieces' log-probabilities."""
    translator = Translator.load(str(FIXTURES / "model_v2.pt"), beam_size=1, max_len=20)
    free = translator.translate_n_best(LINES, alignments=True)
    sp = translator.tokenizer.tgt
    prefixes = []
    for hyps in free:  # the longest beginning (up to 3 pieces) that SentencePiece encodes back into those pieces
        pieces = hyps[0].alignment.tgt_pieces[:-1]
        prefixes.append(next((sp.decode_pieces(pieces[:k]) for k in (3, 2, 1) if len(pieces) >= k
                              and sp.encode(sp.decode_pieces(pieces[:k]), out_type=str) == pieces[:k]), None))
    assert sum(p is not None for p in prefixes) >= 4
    forced = translator.translate_n_best(LINES, prefixes)
    for f, u in zip(forced, free):
        assert f[0].text == u[0].text
        assert f[0].score == pytest.approx(u[0].score, abs=1e-5)


def test_translate_reads_prefixes_from_json_lines(model_file, workdir, capfd) -> None:
    records = [{"text": LINES[0], "prefix": "Ein Hund"}, {"text": LINES[2]}, {"text": ""},
               {"text": LINES[3], "prefix": None}, {"text": LINES[4], "prefix": "Menschen"}]
    (workdir / "in.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) + "\n",
                                      encoding="utf-8")
    assert run_script("translate", f"model_file={model_file}", "input=in.jsonl", "input_format=jsonl",
                      "output=out.de", "beam_size=3") == 0
    out = (workdir / "out.de").read_text(encoding="utf-8").splitlines()
    texts, prefixes = [r["text"] for r in records] + [""], [r.get("prefix") for r in records] + [None]
    assert out == Translator.load(str(model_file), beam_size=3).translate(texts, prefixes)
    assert out[0].startswith("Ein Hund") and out[4].startswith("Menschen") and out[2] == out[5] == ""
    assert run_script("translate", f"model_file={model_file}", "input=in.jsonl", "input_format=jsonl",
                      "output=nbest.jsonl", "beam_size=3", "n_best=2") == 0
    best = [json.loads(line) for line in (workdir / "nbest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in best if r["rank"] == 1] == out
    # the default input format reads the same file as text: each JSON line is a sentence to translate
    assert run_script("translate", f"model_file={model_file}", "input=in.jsonl", "output=plain.de", "beam_size=3") == 0
    plain = (workdir / "plain.de").read_text(encoding="utf-8").splitlines()
    raw = (workdir / "in.jsonl").read_text(encoding="utf-8").splitlines()
    assert plain == Translator.load(str(model_file), beam_size=3).translate(raw)


@pytest.mark.parametrize("line, named", [("not json", "not JSON"), ('["A dog."]', '"text"'),
                                         ('{"txt": "A dog."}', '"text"'),
                                         ('{"text": "A dog.", "prefx": "Ein"}', "prefx"),
                                         ('{"text": "A dog.", "prefix": 3}', '"prefix" must be a string')])
def test_a_bad_json_input_line_is_one_error_line(model_file, workdir, capfd, line: str, named: str) -> None:
    (workdir / "in.jsonl").write_text('{"text": "A cat."}\n' + line + "\n", encoding="utf-8")
    assert run_script("translate", f"model_file={model_file}", "input=in.jsonl", "input_format=jsonl",
                      "output=out.de") == 2
    one_line_error(capfd, "in.jsonl:2", named)
    assert not (workdir / "out.de").exists()


def test_samples_are_reproducible_per_line_whatever_batch_it_lands_in(model_file) -> None:
    translator = Translator.load(str(model_file), sampling="top_p", top_p=0.9, sampling_seed=1)
    assert translator.beam_size == 1 and translator.info()["sampling"]["method"] == "top_p"
    together = translator.translate(LINES)
    assert [translator.translate([line])[0] for line in LINES] == together
    assert translator.translate(LINES[::-1] + LINES)[::-1][len(LINES):] == together
    assert Translator.load(str(model_file), sampling="top_p", top_p=0.9, sampling_seed=2).translate(LINES) != together
    assert Translator.load(str(model_file), beam_size=1).translate(LINES) != together
    prefixed = translator.translate(LINES, PREFIXES)
    assert prefixed[0].startswith("Ein Hund") and prefixed[2].startswith("Zwei Männer")


def test_translate_samples_with_the_model_files_default_beam(model_file, workdir, capfd) -> None:
    """The model file's beam is 2; sampling=top_k translates with beam 1, the same output in each run."""
    (workdir / "in.en").write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    for name in ("a.de", "b.de"):
        assert run_script("translate", f"model_file={model_file}", "input=in.en", f"output={name}",
                          "sampling=top_k", "top_k=5", "temperature=1.5") == 0
    assert (workdir / "a.de").read_text() == (workdir / "b.de").read_text()
    assert (workdir / "a.de").read_text().splitlines() == \
        Translator.load(str(model_file), sampling="top_k", top_k=5, temperature=1.5).translate(LINES)


@pytest.mark.parametrize("overrides, named", [(["sampling=top_k", "beam_size=3"], ["sampling=top_k", "beam_size=3"]),
                                              (["sampling=top_p", "n_best=2"], ["sampling=top_p", "n_best=2"]),
                                              (["sampling=nucleus"], ["sampling", "nucleus"]),
                                              (["sampling=top_k", "top_k=0"], ["top_k"]),
                                              (["sampling=top_p", "top_p=1.5"], ["top_p"]),
                                              (["sampling=top_p", "temperature=0"], ["temperature"]),
                                              (["input_format=csv"], ["input_format"])])
def test_bad_sampling_settings_are_one_error_line(model_file, workdir, capfd, overrides, named) -> None:
    (workdir / "in.en").write_text("A dog.\n", encoding="utf-8")
    assert run_script("translate", f"model_file={model_file}", "input=in.en", "output=out.de", *overrides) == 2
    one_line_error(capfd, *named)


class StepAttention(nn.Module):
    """A known attention pattern: at search step t every hypothesis of a sentence attends only to its source
    piece min(t, n - 1), n = the sentence's pieces before EOS (the step counts from the batch's encoding)."""

    def keys(self, values: torch.Tensor) -> torch.Tensor:
        self.t = 0
        return values

    def forward(self, query: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B*K, 1, H) -> context (B*K, 1, M), weights (B*K, 1, S) for a memory of B sentences."""
        sentences, width = memory.mask.shape
        last = memory.mask.sum(1) - 2  # each sentence's last piece before EOS
        weights = nn.functional.one_hot(last.clamp(max=self.t), width).to(memory.values.dtype).unsqueeze(1)
        self.t += 1
        k = query.size(0) // sentences
        return torch.bmm(weights, memory.values).repeat_interleave(k, 0), weights.repeat_interleave(k, 0)


def known_pattern_translator(model_file: Path, beam_size: int, n_best: int) -> Translator:
    model, tokenizer, _ = modelfile.load_model(model_file)
    model.decoder.attention = StepAttention()
    return Translator(model, tokenizer, DecodingConfig(beam_size=beam_size, n_best=n_best, max_len=20))


def assert_words(pieces: list[str], numbers: list[int], text: str) -> None:
    """numbers number the whitespace-separated words of text, in order, each piece's text inside its word."""
    words = text.split()
    assert numbers == sorted(numbers) and set(numbers) == set(range(len(words))), (pieces, numbers, words)
    for piece, n in zip(pieces, numbers):
        if not piece.startswith("<0x"):  # a byte piece spells part of a character
            assert piece.strip("\u2581") in words[n], (piece, words[n])


@pytest.mark.parametrize("beam_size, n_best", [(1, 1), (3, 3)])
def test_alignments_follow_a_known_attention_pattern(model_file, beam_size: int, n_best: int) -> None:
    """Every hypothesis's target piece t aligns to source piece min(t, n - 1); word pairs pair the words those
    pieces are in (in both texts); attention() gives each line its own pattern, whatever its batch."""
    translator = known_pattern_translator(model_file, beam_size, n_best)
    sp = translator.tokenizer.src
    lists = translator.translate_n_best(LINES, alignments=True)
    for line, hyps in zip(LINES, lists):
        assert all(isinstance(h, AlignedHypothesis) for h in hyps)
        if not line:
            assert hyps[0].alignment.source_positions() == [] and hyps[0].alignment.word_pairs() == []
            continue
        assert len(hyps) == n_best
        for h in hyps:
            a = h.alignment
            src, tgt = a.src_pieces[:-1], a.tgt_pieces[:-1]
            assert src == sp.encode(line, out_type=str) and sp.decode_pieces(tgt) == h.text
            expected = [min(t, len(src) - 1) for t in range(len(tgt))]
            assert a.source_positions() == expected
            src_words, tgt_words = word_numbers(src), word_numbers(tgt)
            assert_words(src, src_words, line)
            assert_words(tgt, tgt_words, h.text)
            assert a.word_pairs() == sorted({(src_words[s], tgt_words[t]) for t, s in enumerate(expected)})
    greedy = known_pattern_translator(model_file, 1, 1)
    for line, a in zip(LINES, greedy.attention(LINES)):
        if line:
            assert a.src_pieces[:-1] == sp.encode(line, out_type=str)
            assert a.source_positions() == [min(t, len(a.src_pieces) - 2) for t in range(len(a.tgt_pieces) - 1)]


def test_word_numbers_of_pieces_split_around_spaces_and_bytes() -> None:
    """▁ alone (SentencePiece splits it off before byte pieces) belongs to the next word; a trailing one to the last."""
    assert word_numbers(["\u2581A", "\u2581do", "g", "\u2581", "<0xF0>", "<0x9F>", "\u2581runs", "\u2581"]) == \
        [0, 1, 1, 2, 2, 2, 3, 3]
    assert word_numbers(["s", "\u2581", "\u2581und"]) == [0, 1, 1]


def test_translate_writes_alignments_for_every_hypothesis(model_file, workdir, capfd) -> None:
    (workdir / "in.en").write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    assert run_script("translate", f"model_file={model_file}", "input=in.en", "output=plain.de", "beam_size=3") == 0
    plain = (workdir / "plain.de").read_text(encoding="utf-8").splitlines()
    translator = Translator.load(str(model_file), beam_size=3, n_best=2)
    for extra, per_line in (([], 1), (["n_best=2"], 2)):
        assert run_script("translate", f"model_file={model_file}", "input=in.en", "output=out.jsonl", "beam_size=3",
                          "alignments=true", *extra) == 0
        records = [json.loads(line) for line in (workdir / "out.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [r["text"] for r in records if r["rank"] == 1] == plain
        for r in records:
            assert set(r) == {"line", "rank", "score", "text", "src_pieces", "tgt_pieces", "piece_alignment",
                              "word_alignment"}
            line = LINES[r["line"] - 1]
            assert r["rank"] <= (per_line if line else 1)
            assert r["src_pieces"] == translator.tokenizer.src.encode(line, out_type=str)
            assert translator.tokenizer.tgt.decode_pieces(r["tgt_pieces"]) == r["text"]
            assert len(r["piece_alignment"]) == (len(r["tgt_pieces"]) if line else 0)
            assert all(0 <= s < len(r["src_pieces"]) for s in r["piece_alignment"])
            assert all(0 <= s < len(line.split()) and 0 <= t < len(r["text"].split()) for s, t in r["word_alignment"])
    lists = translator.translate_n_best(LINES, alignments=True)
    assert [[r["piece_alignment"] for r in records if r["line"] == n] for n in range(1, len(LINES) + 1)] == \
        [[h.alignment.source_positions() for h in hyps] for hyps in lists]


def test_alignments_of_a_model_without_attention_are_one_error_line(model_file, workdir, capfd) -> None:
    contents = modelfile.read_contents(model_file)
    config = {**contents["model"], "attention": "none"}
    vocab = contents["state_dict"]["decoder.output.bias"].numel()
    plain = EncoderDecoder(vocab, vocab, PAD, ModelConfig(**config))
    modelfile.save(workdir / "plain.pt", config, plain.state_dict(), contents["tokenizer"], contents["decoding"])
    (workdir / "in.en").write_text("A dog.\n", encoding="utf-8")
    assert run_script("translate", "model_file=plain.pt", "input=in.en", "output=out.jsonl", "alignments=true") == 2
    one_line_error(capfd, "alignments", "no attention")
    assert not (workdir / "out.jsonl").exists()
