"""SentencePiece subword models for source and target (one joint model by default).

Trained with byte fallback, so no input character is ever unknown, on sentences streamed to
SentencePiece (never gathered in one list). The serialized models are bytes: they travel inside
checkpoints and model files; a Tokenizer pickles as those bytes (for datasets' worker processes).

Subword sampling (SentencePiece's subword regularization) draws a segmentation of each line at random.
SentencePiece 0.2.3 draws from an absl::BitGen, which Abseil salts per process: a seed repeats its draws
within one process only, so the draws are made reproducible by storing them (seq2seq.training.datamodule).
"""
import hashlib
import io
import os
import re
from collections.abc import Iterable
from itertools import chain
from pathlib import Path

import sentencepiece as spm

from seq2seq.config import SubwordSamplingConfig

PAD, UNK, BOS, EOS = 0, 1, 2, 3
# What str.splitlines() breaks lines at (\n, \r, \v, \f, \x1c-\x1e, \x85, \u2028, \u2029): byte-fallback pieces
# such as <0x0A> can produce them, and a translation must stay one line.
LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


class Tokenizer:
    def __init__(self, src_model: bytes, tgt_model: bytes | None = None) -> None:
        self.src_model, self.tgt_model = src_model, tgt_model
        self.src = spm.SentencePieceProcessor(model_proto=src_model)
        self.tgt = self.src if tgt_model is None else spm.SentencePieceProcessor(model_proto=tgt_model)

    @property
    def joint(self) -> bool:
        return self.tgt_model is None

    @property
    def src_vocab_size(self) -> int:
        return self.src.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt.get_piece_size()

    def __reduce__(self) -> tuple:
        return Tokenizer, (self.src_model, self.tgt_model)

    @classmethod
    def train(cls, src: Iterable[str], tgt: Iterable[str], vocab_size: int = 8000,
              model_type: str = "unigram", joint: bool = True) -> "Tokenizer":
        """A joint model reads every source sentence, then every target sentence; each iterable once."""
        if joint:
            return cls(_train(chain(src, tgt), vocab_size, model_type))
        return cls(_train(src, vocab_size, model_type), _train(tgt, vocab_size, model_type))

    def state(self) -> dict[str, bytes | None]:
        return {"src_model": self.src_model, "tgt_model": self.tgt_model}

    def digest(self) -> str:
        """A short hash of the models: what encoded data depends on."""
        return hashlib.sha256(self.src_model + (self.tgt_model or b"")).hexdigest()[:24]

    @classmethod
    def from_state(cls, state: dict) -> "Tokenizer":
        return cls(state["src_model"], state["tgt_model"])

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name, blob in (("spm.tgt.model", self.tgt_model), ("spm.src.model", self.src_model)):  # src last: load() waits for it
            if blob is not None:
                tmp = folder / (name + ".tmp")
                tmp.write_bytes(blob)
                tmp.replace(folder / name)

    @classmethod
    def load(cls, folder: Path) -> "Tokenizer | None":
        """The tokenizer saved in `folder`, or None if there is none."""
        if not (folder / "spm.src.model").exists():
            return None
        tgt = folder / "spm.tgt.model"
        return cls((folder / "spm.src.model").read_bytes(), tgt.read_bytes() if tgt.exists() else None)

    def encode_src(self, lines: list[str], sampling: SubwordSamplingConfig | None = None) -> list[list[int]]:
        """Source ids end with EOS, so even an empty line is one token long. The most probable segmentation,
        or with `sampling` one drawn at random (its smoothing and nbest_size)."""
        return [ids + [EOS] for ids in _encode(self.src, lines, sampling)]

    def encode_tgt(self, lines: list[str], sampling: SubwordSamplingConfig | None = None) -> list[list[int]]:
        return _encode(self.tgt, lines, sampling)

    def decode_tgt(self, ids: list[list[int]]) -> list[str]:
        """Texts of target id sequences, each one line: a line break the pieces spell becomes a space."""
        return [LINE_BREAKS.sub(" ", text) for text in self.tgt.decode(ids)]

    def src_pieces(self, line: str) -> list[str]:
        return self.src.encode(line, out_type=str)

    def tgt_pieces(self, ids: list[int]) -> list[str]:
        return [self.tgt.id_to_piece(i) for i in ids]


def _encode(processor: spm.SentencePieceProcessor, lines: list[str],
            sampling: SubwordSamplingConfig | None) -> list[list[int]]:
    if sampling is None:
        return processor.encode(lines)
    return processor.encode(lines, enable_sampling=True, alpha=sampling.smoothing, nbest_size=sampling.nbest_size)


def _train(sentences: Iterable[str], vocab_size: int, model_type: str) -> bytes:
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=(s for s in sentences if s), model_writer=out, vocab_size=vocab_size,
        model_type=model_type, byte_fallback=True, character_coverage=1.0, hard_vocab_limit=False,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS, minloglevel=2, num_threads=len(os.sched_getaffinity(0)),
        input_sentence_size=2_000_000, shuffle_input_sentence=True)
    return out.getvalue()
