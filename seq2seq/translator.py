"""Model file -> translations: batched, in input order, streamed, no Trainer needed.

    from seq2seq import Translator
    Translator.load("runs/.../model.pt", beam_size=5).translate(["A dog runs."])
"""
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice

import torch
from tqdm import tqdm

from seq2seq import modelfile
from seq2seq.config import ConfigError, DecodingConfig
from seq2seq.data.batching import TokenBatchSampler
from seq2seq.data.tokenizer import BOS, EOS, PAD, Tokenizer
from seq2seq.model import EncoderDecoder
from seq2seq.search import decode, strip

log = logging.getLogger(__name__)


@dataclass
class Alignment:
    """One sentence's attention: weights (T, S), row t = target piece t's attention over the source pieces.

    Both piece lists end with EOS ("</s>"): the source as the encoder read it, the target as searched.
    """
    src_pieces: list[str]
    tgt_pieces: list[str]
    weights: torch.Tensor
    translation: str


class Translator:
    """Batched search over a model with its tokenizer. max_source_len: longer inputs are cut there (with a
    warning); max_tokens: source pieces x beam per batch."""

    def __init__(self, model: EncoderDecoder, tokenizer: Tokenizer, decoding: DecodingConfig | None = None,
                 max_source_len: int = 400, max_tokens: int = 6000, device: str = "cpu") -> None:
        for key, value in (("max_source_len", max_source_len), ("max_tokens", max_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be an integer >= 1, got {value!r}")
        self.model, self.tokenizer = model.to(device).eval(), tokenizer
        self.decoding = decoding or DecodingConfig()
        self.max_source_len, self.max_tokens, self.device = max_source_len, max_tokens, device

    @classmethod
    def load(cls, path: str, beam_size: int | None = None, alpha: float | None = None, max_len: int | None = None,
             **options) -> "Translator":
        """A translator for a model file or checkpoint; beam_size, alpha, max_len override its decoding defaults."""
        model, tokenizer, decoding = modelfile.load_model(path)
        wanted = {"beam_size": beam_size, "alpha": alpha, "max_len": max_len}
        decoding = replace(decoding, **{k: v for k, v in wanted.items() if v is not None})
        return cls(model, tokenizer, decoding, **{k: v for k, v in options.items() if v is not None})

    @property
    def beam_size(self) -> int:
        return self.decoding.beam_size

    def translate(self, lines: list[str]) -> list[str]:
        """One translation per line, in order; an empty line gives an empty line."""
        return list(self.stream(lines, total=len(lines), progress=False))

    def stream(self, lines: Iterable[str], total: int | None = None, chunk: int = 5000,
               progress: bool = True) -> Iterator[str]:
        """Translate an iterable of lines chunk by chunk, so memory stays bounded."""
        it, first = iter(lines), 1
        with tqdm(total=total, unit="sent", disable=None if progress else True, desc="translate") as bar:
            while block := list(islice(it, chunk)):
                yield from self._translate_block(block, first)
                bar.update(len(block))
                first += len(block)

    @property
    def has_attention(self) -> bool:
        """False for the plain model (attention: none), whose decoder sees the source only through h_0."""
        return self.model.decoder.attention is not None

    def attention(self, lines: list[str]) -> list[Alignment]:
        """Each line's translation with the attention weights of the search that produced it.

        A blank line gives an empty Alignment, as translate() gives an empty translation.
        """
        if not self.has_attention:
            raise ValueError("this model has no attention (model.attention: none): "
                             "its decoder sees the source only through the encoder's final state")
        ids = self._encode(lines)
        out = [Alignment([], [], torch.zeros(0, 0), "") for _ in lines]
        todo = [i for i, line in enumerate(lines) if line.strip()]
        for batch, src, src_lens in self._batches([ids[i] for i in todo]):
            tokens, weights = self._search(src, src_lens, return_attention=True)  # (B, T), (B, T, S)
            for b, row, text in zip(batch, tokens.tolist(), self.tokenizer.decode_tgt(strip(tokens, EOS))):
                steps = row.index(EOS) + 1 if EOS in row else len(row)
                source = ids[todo[b]]
                out[todo[b]] = Alignment([self.tokenizer.src.id_to_piece(i) for i in source],
                                         self.tokenizer.tgt_pieces(row[:steps]),
                                         weights[b, :steps, : len(source)].float().cpu(), text)
        return out

    def _translate_block(self, lines: list[str], first: int = 1) -> list[str]:
        """Translations of lines numbered first, first + 1, ... (the numbers name them in warnings)."""
        ids = self._encode(lines, first)
        todo = [i for i, line in enumerate(lines) if line.strip()]
        out = [""] * len(lines)
        for batch, src, src_lens in self._batches([ids[i] for i in todo]):
            tokens, _ = self._search(src, src_lens)
            for b, text in zip(batch, self.tokenizer.decode_tgt(strip(tokens, EOS))):
                out[todo[b]] = text
        return out

    def _encode(self, lines: list[str], first: int = 1) -> list[list[int]]:
        """Source ids per line, EOS-terminated, cut to max_source_len pieces."""
        ids = self.tokenizer.encode_src([line.strip() for line in lines])
        for n, row in enumerate(ids):
            if len(row) > self.max_source_len:
                log.warning("input line %d has %d pieces; translating its first %d (max_source_len)",
                            first + n, len(row), self.max_source_len)
                ids[n] = row[: self.max_source_len - 1] + [EOS]
        return ids

    def _batches(self, ids: list[list[int]]) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """Length-sorted batches within the token budget: (positions in ids, src (B, S), src_lens (B,))."""
        budget = max(self.max_tokens // self.decoding.beam_size, self.max_source_len + 1)
        for batch in TokenBatchSampler([len(row) for row in ids], [0] * len(ids), budget, shuffle=False):
            rows = [ids[b] for b in batch]
            src = torch.full((len(rows), max(map(len, rows))), PAD)
            for r, row in enumerate(rows):
                src[r, : len(row)] = torch.tensor(row)
            yield batch, src.to(self.device), torch.tensor([len(r) for r in rows], device=self.device)

    def _search(self, src: torch.Tensor, src_lens: torch.Tensor, return_attention: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return decode(self.model, src, src_lens, self.decoding, bos=BOS, eos=EOS, return_attention=return_attention)
