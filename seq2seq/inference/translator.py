"""Model file(s) -> translations: batched, in input order, streamed, no Trainer needed.

    from seq2seq import Translator
    Translator.load("runs/.../model.pt", beam_size=5).translate(["A dog runs."])
    Translator.load(["a.pt", "b.pt"], n_best=3).translate_n_best(["A dog runs."])  # an ensemble, 3-best lists
    Translator.load("runs/.../model.pt", quantize="int8")  # or precision="bf16"

Every entry point (translate.py, evaluate.py, serve.py, this API) decodes through this class.
"""
import copy
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

import torch
from tqdm import tqdm

from seq2seq import modelfile
from seq2seq.config import ConfigError, DecodingConfig, TranslatorConfig
from seq2seq.data.batching import TokenBatchSampler
from seq2seq.data.tokenizer import BOS, EOS, PAD, Tokenizer
from seq2seq.inference import numerics
from seq2seq.inference.ensemble import Ensemble, as_ensemble
from seq2seq.inference.search import Hypotheses, decode, strip
from seq2seq.model import EncoderDecoder

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


@dataclass
class Hypothesis:
    """One translation and its score: log-probability / ((5 + pieces) / 6) ** alpha, pieces counting EOS."""
    text: str
    score: float


class Translator:
    """Batched search over a model (or an Ensemble) with its tokenizer. max_source_len: longer inputs are cut
    there (with a warning); max_tokens: source pieces x beam per batch; precision: fp32 or bf16."""

    def __init__(self, model: EncoderDecoder | Ensemble, tokenizer: Tokenizer, decoding: DecodingConfig | None = None,
                 max_source_len: int = TranslatorConfig.max_source_len, max_tokens: int = TranslatorConfig.max_tokens,
                 device: str = TranslatorConfig.device, precision: str = TranslatorConfig.precision) -> None:
        TranslatorConfig(None, max_source_len=max_source_len, max_tokens=max_tokens, device=device, precision=precision)
        self.model, self.tokenizer = as_ensemble(model).to(device).eval(), tokenizer
        self.decoding = decoding or DecodingConfig()
        self.max_source_len, self.max_tokens, self.device, self.precision = max_source_len, max_tokens, device, precision

    @classmethod
    def load(cls, path: str | list[str], beam_size: int | None = None, alpha: float | None = None,
             max_len: int | None = None, n_best: int | None = None, quantize: str | None = None,
             **options) -> "Translator":
        """A translator for a model file or checkpoint, or an ensemble of several (one tokenizer); beam_size,
        alpha, max_len, n_best override the (first) file's decoding defaults; quantize="int8" converts
        the GRUs and Linears (numerics.py); options: max_source_len, max_tokens, device, precision."""
        paths = [str(path)] if isinstance(path, (str, Path)) else [str(p) for p in path]
        if not paths:
            raise ConfigError("model_file: give a model file, or a list of them for an ensemble")
        TranslatorConfig(paths, beam_size, alpha, max_len, n_best, quantize or "none",
                         **{k: v for k, v in options.items() if v is not None})  # every check before loading
        models, tokenizer, decoding = [], None, None
        for p in paths:
            model, tok, dec = modelfile.load_model(p)
            if tokenizer is None:
                tokenizer, decoding = tok, dec
            elif tok.state() != tokenizer.state():
                raise ConfigError(f"{paths[0]} and {p} have different tokenizers: the models of an ensemble must "
                                  f"share one (train them with the same data.tokenizer settings and data)")
            models.append(numerics.quantize_int8(model) if quantize == "int8" else model)
        wanted = {"beam_size": beam_size, "alpha": alpha, "max_len": max_len, "n_best": n_best}
        decoding = replace(decoding, **{k: v for k, v in wanted.items() if v is not None})
        if beam_size is not None and n_best is None:  # a smaller beam than the file's keeps n_best valid
            decoding = replace(decoding, n_best=min(decoding.n_best, beam_size))
        return cls(Ensemble(models), tokenizer, decoding, **{k: v for k, v in options.items() if v is not None})

    @classmethod
    def from_options(cls, cfg: Mapping, **overrides) -> "Translator":
        """The translator that a config's TranslatorConfig keys (model_file, beam_size, ...) describe."""
        options = TranslatorConfig.options(cfg) | overrides
        return cls.load(options.pop("model_file"), **options)

    def using(self, **decoding) -> "Translator":
        """This translator (the same model) with other search settings, e.g. using(beam_size=1)."""
        other = copy.copy(self)
        other.decoding = replace(self.decoding, **decoding)
        return other

    @property
    def beam_size(self) -> int:
        return self.decoding.beam_size

    def translate(self, lines: list[str]) -> list[str]:
        """One translation per line, in order; an empty line gives an empty line."""
        return list(self.stream(lines, total=len(lines), progress=False))

    def translate_n_best(self, lines: list[str]) -> list[list[Hypothesis]]:
        """decoding.n_best hypotheses per line, best first (an empty line: one, empty, score 0)."""
        return list(self.stream_n_best(lines, total=len(lines), progress=False))

    def stream(self, lines: Iterable[str], total: int | None = None, chunk: int = 5000,
               progress: bool = True) -> Iterator[str]:
        """The best translation of each line of an iterable, chunk by chunk, so memory stays bounded;
        chunk=1 translates each line as soon as it arrives (interactive use)."""
        for hyps in self.stream_n_best(lines, total, chunk, progress):
            yield hyps[0].text

    def stream_n_best(self, lines: Iterable[str], total: int | None = None, chunk: int = 5000,
                      progress: bool = True) -> Iterator[list[Hypothesis]]:
        """Each line's n-best list, in input order, chunk by chunk."""
        it, first = iter(lines), 1
        with tqdm(total=total, unit="sent", disable=None if progress else True, desc="translate") as bar:
            while block := list(islice(it, chunk)):
                yield from self._translate_block(block, first)
                bar.update(len(block))
                first += len(block)

    @property
    def has_attention(self) -> bool:
        """False for plain models (attention: none), whose decoder sees the source only through h_0."""
        return self.model.has_attention

    def info(self) -> dict:
        """What is loaded: vocabulary, parameters, search settings (the server's model-info answer)."""
        return {"models": len(self.model.members), "model": vars(self.model.members[0].config),
                "src_vocab_size": self.tokenizer.src_vocab_size, "tgt_vocab_size": self.tokenizer.tgt_vocab_size,
                "decoding": vars(self.decoding), "precision": self.precision,
                "quantize": "int8" if numerics.is_quantized(self.model) else "none",
                "max_source_len": self.max_source_len, "device": self.device}

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
            tokens, weights = self._search(src, src_lens, return_attention=True).best()  # (B, T), (B, T, S)
            for b, row, text in zip(batch, tokens.tolist(), self.tokenizer.decode_tgt(strip(tokens, EOS))):
                steps = row.index(EOS) + 1 if EOS in row else len(row)
                source = ids[todo[b]]
                out[todo[b]] = Alignment([self.tokenizer.src.id_to_piece(i) for i in source],
                                         self.tokenizer.tgt_pieces(row[:steps]),
                                         weights[b, :steps, : len(source)].float().cpu(), text)
        return out

    def _translate_block(self, lines: list[str], first: int = 1) -> list[list[Hypothesis]]:
        """n-best lists of lines numbered first, first + 1, ... (the numbers name them in warnings).

        Hypotheses the search could not complete (score -inf, possible only when a beam is wider than the
        choices left) are dropped, so a list holds at most n_best.
        """
        ids = self._encode(lines, first)
        todo = [i for i, line in enumerate(lines) if line.strip()]
        out = [[Hypothesis("", 0.0)] for _ in lines]
        for batch, src, src_lens in self._batches([ids[i] for i in todo]):
            found = self._search(src, src_lens)  # tokens (B, N, T), scores (B, N)
            n = found.tokens.size(1)
            texts = self.tokenizer.decode_tgt(strip(found.tokens.flatten(0, 1), EOS))
            for row, (b, scores) in enumerate(zip(batch, found.scores.tolist())):
                out[todo[b]] = [Hypothesis(texts[row * n + r], s) for r, s in enumerate(scores) if s > float("-inf")]
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

    def _search(self, src: torch.Tensor, src_lens: torch.Tensor, return_attention: bool = False) -> Hypotheses:
        with numerics.compute(self.precision, self.device):
            return decode(self.model, src, src_lens, self.decoding, bos=BOS, eos=EOS, return_attention=return_attention)
