"""What every translator does with lines, whatever computes the search: the PyTorch ``Translator``
(translator.py) and the torch-free ``OnnxTranslator`` (onnx_runtime.py). Imports neither torch nor onnxruntime.

A subclass gives ``_translate_block`` (a block of lines -> their n-best lists), ``decoding`` (beam_size,
alpha, max_len, n_best), ``tokenizer``, ``max_source_len`` and ``check_alignments``; this class streams
lines through it in chunks, in input order, and cuts over-long inputs.
"""
import copy
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from itertools import islice, repeat

from seq2seq.data.tokenizer import EOS

log = logging.getLogger(__name__)


@dataclass
class Hypothesis:
    """One translation and its score: log-probability / ((5 + pieces) / 6) ** alpha, pieces counting EOS. With a
    forced prefix the pieces are the whole output: the score includes the prefix pieces' log-probabilities."""
    text: str
    score: float


class LineTranslator:
    """Lines in, n-best lists of Hypothesis out. `prefixes`, one per line (None or "" for none): the target text
    each translation is forced to begin with. A blank line gives an empty translation, prefix or not."""

    def using(self, **decoding) -> "LineTranslator":
        """This translator (the same model) with other search settings, e.g. using(beam_size=1)."""
        other = copy.copy(self)
        other.decoding = replace(self.decoding, **decoding)
        return other

    @property
    def beam_size(self) -> int:
        return self.decoding.beam_size

    def translate(self, lines: list[str], prefixes: list[str | None] | None = None) -> list[str]:
        """One translation per line, in order; an empty line gives an empty line."""
        return [hyps[0].text for hyps in self.translate_n_best(lines, prefixes)]

    def translate_n_best(self, lines: list[str], prefixes: list[str | None] | None = None,
                         alignments: bool = False) -> list[list[Hypothesis]]:
        """decoding.n_best hypotheses per line, best first (an empty line: one, empty, score 0); alignments=True
        gives AlignedHypothesis objects, each with its own Alignment."""
        if prefixes is not None and len(prefixes) != len(lines):
            raise ValueError(f"one prefix per line: got {len(prefixes)} prefixes for {len(lines)} lines")
        return list(self.stream_n_best(lines, total=len(lines), progress=False, prefixes=prefixes,
                                       alignments=alignments))

    def stream(self, lines: Iterable[str], total: int | None = None, chunk: int = 5000,
               progress: bool = True, prefixes: Iterable[str | None] | None = None) -> Iterator[str]:
        """The best translation of each line of an iterable, chunk by chunk, so memory stays bounded;
        chunk=1 translates each line as soon as it arrives (interactive use)."""
        for hyps in self.stream_n_best(lines, total, chunk, progress, prefixes):
            yield hyps[0].text

    def stream_n_best(self, lines: Iterable[str], total: int | None = None, chunk: int = 5000,
                      progress: bool = True, prefixes: Iterable[str | None] | None = None,
                      alignments: bool = False) -> Iterator[list[Hypothesis]]:
        """Each line's n-best list, in input order, chunk by chunk; prefixes: an iterable as long as lines."""
        if alignments:
            self.check_alignments()
        it, first = zip(lines, repeat(None) if prefixes is None else prefixes, strict=prefixes is not None), 1
        bar = None
        if progress:  # tqdm only then: the torch-free runtime's deployments need not have it
            from tqdm import tqdm

            bar = tqdm(total=total, unit="sent", disable=None, desc="translate")
        try:
            while block := list(islice(it, chunk)):
                texts, forced = zip(*block)
                yield from self._translate_block(list(texts), list(forced), first, alignments)
                if bar is not None:
                    bar.update(len(block))
                first += len(block)
        finally:
            if bar is not None:
                bar.close()

    def check_alignments(self) -> None:
        """Raise the error that says why this translator gives no alignments, if it gives none."""

    def _translate_block(self, lines: list[str], prefixes: list[str | None], first: int,
                         alignments: bool) -> list[list[Hypothesis]]:
        raise NotImplementedError

    def _encode(self, lines: list[str], first: int = 1) -> list[list[int]]:
        """Source ids per line, EOS-terminated, cut to max_source_len pieces."""
        ids = self.tokenizer.encode_src([line.strip() for line in lines])
        for n, row in enumerate(ids):
            if len(row) > self.max_source_len:
                log.warning("input line %d has %d pieces; translating its first %d (max_source_len)",
                            first + n, len(row), self.max_source_len)
                ids[n] = row[: self.max_source_len - 1] + [EOS]
        return ids
