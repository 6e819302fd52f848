"""Model file -> translations: batched, in input order, streamed, no Trainer needed.

    from seq2seq import Translator
    Translator.load("runs/.../model.pt", beam_size=5).translate(["A dog runs."])
"""
import logging
from collections.abc import Iterable, Iterator
from itertools import islice

import torch
from tqdm import tqdm

from seq2seq import modelfile
from seq2seq.data.batching import TokenBatchSampler
from seq2seq.data.tokenizer import BOS, EOS, PAD, Tokenizer
from seq2seq.model import Seq2Seq
from seq2seq.search import translate_ids

log = logging.getLogger(__name__)


class Translator:
    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, beam_size: int = 5, alpha: float = 1.0,
                 max_len: int = 200, max_source_len: int = 400, max_tokens: int = 6000,
                 device: str = "cpu") -> None:
        for key, value, low in (("beam_size", beam_size, 1), ("max_len", max_len, 1),
                                ("max_source_len", max_source_len, 1), ("max_tokens", max_tokens, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
            raise ValueError(f"alpha (length penalty) must be a number >= 0, got {alpha!r}")
        self.model, self.tokenizer = model.to(device).eval(), tokenizer
        self.beam_size, self.alpha, self.max_len = beam_size, alpha, max_len
        self.max_source_len, self.max_tokens, self.device = max_source_len, max_tokens, device

    @classmethod
    def load(cls, path: str, **options) -> "Translator":
        """A translator for a model file or checkpoint; options override its decoding defaults."""
        model, tokenizer, decoding = modelfile.load(path)
        settings = {k: v for k, v in decoding.items() if k in ("beam_size", "alpha", "max_len")}
        settings.update({k: v for k, v in options.items() if v is not None})
        return cls(model, tokenizer, **settings)

    def translate(self, lines: list[str]) -> list[str]:
        """One translation per line, in order; an empty line gives an empty line."""
        return list(self.stream(lines, total=len(lines), progress=False))

    def stream(self, lines: Iterable[str], total: int | None = None, chunk: int = 5000,
               progress: bool = True) -> Iterator[str]:
        """Translate an iterable of lines chunk by chunk, so memory stays bounded."""
        it = iter(lines)
        with tqdm(total=total, unit="sent", disable=None if progress else True, desc="translate") as bar:
            while block := list(islice(it, chunk)):
                yield from self._translate_block(block)
                bar.update(len(block))

    def _translate_block(self, lines: list[str]) -> list[str]:
        ids = self.tokenizer.encode_src([line.strip() for line in lines])
        for n, row in enumerate(ids):
            if len(row) > self.max_source_len:
                log.warning("input line %d has %d pieces; translating its first %d (max_source_len)",
                            n + 1, len(row), self.max_source_len)
                ids[n] = row[: self.max_source_len - 1] + [EOS]
        todo = [i for i, line in enumerate(lines) if line.strip()]
        out = [""] * len(lines)
        lengths = [len(ids[i]) for i in todo]
        sampler = TokenBatchSampler(lengths, [0] * len(todo), max(self.max_tokens // self.beam_size, self.max_source_len + 1), shuffle=False)
        for batch in sampler:
            rows = [ids[todo[b]] for b in batch]
            src = torch.full((len(rows), max(map(len, rows))), PAD)
            for r, row in enumerate(rows):
                src[r, : len(row)] = torch.tensor(row)
            src_lens = torch.tensor([len(r) for r in rows])
            for b, text in zip(batch, self._search(src.to(self.device), src_lens.to(self.device))):
                out[todo[b]] = text
        return out

    def _search(self, src: torch.Tensor, src_lens: torch.Tensor) -> list[str]:
        ids = translate_ids(self.model, src, src_lens, self.beam_size, self.alpha, self.max_len, BOS, EOS)
        return self.tokenizer.decode_tgt(ids)
