"""Model file(s) -> translations: batched, in input order, streamed, no Trainer needed.

    from seq2seq import Translator
    Translator.load("runs/.../model.pt", beam_size=5).translate(["A dog runs."])
    Translator.load(["a.pt", "b.pt"], n_best=3).translate_n_best(["A dog runs."])  # an ensemble, 3-best lists
    Translator.load("runs/.../model.pt", quantize="int8")  # or precision="bf16"
    Translator.load("runs/.../model.pt").translate_n_best(["A dog runs."], prefixes=["Ein Hund"], alignments=True)
    Translator.load("runs/.../model.pt", sampling="top_p", top_p=0.9).translate(["A dog runs."])

Every entry point (translate.py, evaluate.py, serve.py, this API) decodes through this class.
"""
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from seq2seq import modelfile
from seq2seq.config import ConfigError, DecodingConfig, TranslatorConfig
from seq2seq.data.batching import TokenBatchSampler
from seq2seq.data.tokenizer import BOS, EOS, PAD, Tokenizer
from seq2seq.inference import numerics
from seq2seq.inference.ensemble import Ensemble, as_ensemble
from seq2seq.inference.lines import Hypothesis, LineTranslator
from seq2seq.inference.sampling import Sampling, line_seed
from seq2seq.inference.search import Hypotheses, decode, strip
from seq2seq.model import EncoderDecoder

if TYPE_CHECKING:
    from seq2seq.inference.onnx_runtime import OnnxTranslator

WORD_START = "\u2581"  # SentencePiece's "▁": the space before a word, kept at the start of its first piece


def word_numbers(pieces: list[str]) -> list[int]:
    """Each piece's word, counted from 0 as the decoded text's whitespace-separated words: a piece with text
    begins a word when a ▁ (a space) came before its text, in it or in the pieces since the last text (the
    start counts as a space); a piece that is only ▁ belongs to the word after it, or at the end to the last."""
    numbers: list[int | None] = []
    word, space = -1, True
    for piece in pieces:
        space = space or piece.startswith(WORD_START)
        if piece.strip(WORD_START):
            if space:
                word += 1
            space = False
            numbers.append(word)
        else:
            numbers.append(None)
    after = max(word, 0)
    for i in reversed(range(len(numbers))):
        if numbers[i] is None:
            numbers[i] = after
        else:
            after = numbers[i]
    return numbers


@dataclass
class Alignment:
    """One hypothesis's attention: weights (T, S), row t = target piece t's attention over the source pieces.

    Both piece lists end with EOS ("</s>"): the source as the encoder read it, the target as searched (forced
    prefix pieces first). source_positions() and word_pairs() leave EOS out on both sides.
    """
    src_pieces: list[str]
    tgt_pieces: list[str]
    weights: torch.Tensor
    translation: str

    def source_positions(self) -> list[int]:
        """For each target piece but EOS, the source piece (EOS left out) it attends to most: indices into
        tgt_pieces and src_pieces; [] when either side has nothing but EOS."""
        targets, sources = len(self.tgt_pieces) - 1, len(self.src_pieces) - 1
        if targets <= 0 or sources <= 0:
            return []
        return self.weights[:targets, :sources].argmax(1).tolist()

    def word_pairs(self) -> list[tuple[int, int]]:
        """(source word, target word) pairs, sorted: each target piece's word with the word of the source piece it
        attends to most. Words count from 0 over the whitespace-separated words of the source line (as
        SentencePiece normalizes it) and of the translation."""
        src, tgt = word_numbers(self.src_pieces[:-1]), word_numbers(self.tgt_pieces[:-1])  # EOS left out
        return sorted({(src[s], tgt[t]) for t, s in enumerate(self.source_positions())})

    def record(self) -> dict:
        """The alignment as translate.py's alignments=true JSON lines and the service's "alignments" give it:
        the pieces (EOS left out), piece_alignment (source_positions()) and word_alignment (word_pairs())."""
        return {"src_pieces": self.src_pieces[:-1], "tgt_pieces": self.tgt_pieces[:-1],
                "piece_alignment": self.source_positions(), "word_alignment": [list(p) for p in self.word_pairs()]}


@dataclass
class AlignedHypothesis(Hypothesis):
    """A hypothesis with the attention of the search that produced it (translate_n_best(..., alignments=True))."""
    alignment: Alignment = field(compare=False, repr=False)


NO_ATTENTION = ("this model has no attention (model.attention: none): its decoder sees the source only through "
                "the encoder's final state, so there are no alignments")


class Translator(LineTranslator):
    """Batched search over a model (or an Ensemble) with its tokenizer. max_source_len: longer inputs are cut
    there (with a warning); max_tokens: source pieces x beam per batch; precision: fp32 or bf16; sampling:
    draw each translation (greedy search's place) instead of searching.

    Every method that translates takes `prefixes`, one per line (None or "" for none): the target text each
    translation is forced to begin with, encoded as SentencePiece encodes it; the search continues after
    its pieces. A blank line gives an empty translation, prefix or not.
    """

    def __init__(self, model: EncoderDecoder | Ensemble, tokenizer: Tokenizer, decoding: DecodingConfig | None = None,
                 max_source_len: int = TranslatorConfig.max_source_len, max_tokens: int = TranslatorConfig.max_tokens,
                 device: str = TranslatorConfig.device, precision: str = TranslatorConfig.precision,
                 sampling: Sampling | None = None) -> None:
        TranslatorConfig(None, max_source_len=max_source_len, max_tokens=max_tokens, device=device, precision=precision)
        self.model, self.tokenizer = as_ensemble(model).to(device).eval(), tokenizer
        self.decoding, self.sampling = decoding or DecodingConfig(), sampling
        self.max_source_len, self.max_tokens, self.device, self.precision = max_source_len, max_tokens, device, precision

    @classmethod
    def load(cls, path: str | list[str], beam_size: int | None = None, alpha: float | None = None,
             max_len: int | None = None, n_best: int | None = None, quantize: str | None = None,
             **options) -> "Translator | OnnxTranslator":
        """A translator for a model file or checkpoint, or an ensemble of several (one tokenizer); beam_size,
        alpha, max_len, n_best override the (first) file's decoding defaults; quantize="int8" converts
        the GRUs and Linears (numerics.py); options: max_source_len, max_tokens, device, precision, and
        sampling, top_k, top_p, temperature, sampling_seed (sampling sets beam_size 1 unless given); backend="onnx":
        `path` is an export folder, translated by the torch-free OnnxTranslator (onnx_runtime.py)."""
        paths = [str(path)] if isinstance(path, (str, Path)) else [str(p) for p in path]
        if not paths:
            raise ConfigError("model_file: give a model file, or a list of them for an ensemble")
        options = {k: v for k, v in options.items() if v is not None}
        checked = TranslatorConfig(paths, beam_size=beam_size, alpha=alpha, max_len=max_len, n_best=n_best,
                                   quantize=quantize or "none", **options)  # every check before loading
        if checked.backend == "onnx":  # the torch-free runtime over an export folder (onnx_runtime.py)
            from seq2seq.inference.onnx_runtime import OnnxTranslator

            return OnnxTranslator.load(paths[0], beam_size, alpha, max_len, n_best,
                                       max_source_len=checked.max_source_len, max_tokens=checked.max_tokens)
        sampling = None if checked.sampling is None else Sampling(checked.sampling, checked.top_k, checked.top_p,
                                                                  checked.temperature, checked.sampling_seed)
        if sampling is not None and beam_size is None:
            beam_size = 1
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
        return cls(Ensemble(models), tokenizer, decoding, sampling=sampling,
                   **{k: v for k, v in options.items() if k not in (*SAMPLING_KEYS, "backend")})

    @classmethod
    def from_options(cls, cfg: Mapping, **overrides) -> "Translator | OnnxTranslator":
        """The translator that a config's TranslatorConfig keys (model_file, beam_size, ...) describe."""
        options = TranslatorConfig.options(cfg) | overrides
        return cls.load(options.pop("model_file"), **options)

    def check_alignments(self) -> None:
        if not self.has_attention:
            raise ConfigError(f"alignments: {NO_ATTENTION}")

    @property
    def has_attention(self) -> bool:
        """False for plain models (attention: none), whose decoder sees the source only through h_0."""
        return self.model.has_attention

    def info(self) -> dict:
        """What is loaded: vocabulary, parameters, search settings (the server's model-info answer)."""
        info = {"models": len(self.model.members), "model": vars(self.model.members[0].config),
                "src_vocab_size": self.tokenizer.src_vocab_size, "tgt_vocab_size": self.tokenizer.tgt_vocab_size,
                "decoding": vars(self.decoding), "precision": self.precision,
                "quantize": "int8" if numerics.is_quantized(self.model) else "none",
                "max_source_len": self.max_source_len, "device": self.device}
        return info if self.sampling is None else {**info, "sampling": vars(self.sampling)}

    def attention(self, lines: list[str], prefixes: list[str | None] | None = None) -> list[Alignment]:
        """Each line's best translation with the attention weights of the search that produced it.

        A blank line gives an empty Alignment, as translate() gives an empty translation.
        """
        if not self.has_attention:
            raise ConfigError(NO_ATTENTION)
        return [hyps[0].alignment for hyps in self.translate_n_best(lines, prefixes, alignments=True)]

    def _translate_block(self, lines: list[str], prefixes: list[str | None], first: int = 1,
                         alignments: bool = False) -> list[list[Hypothesis]]:
        """n-best lists of lines numbered first, first + 1, ... (the numbers name them in warnings).

        Hypotheses the search could not complete (score -inf, possible only when a beam is wider than the
        choices left, as after a prefix that fills the output limit) are dropped, so a list holds at most n_best.
        """
        ids = self._encode(lines, first)
        forced = self.tokenizer.encode_tgt([p or "" for p in prefixes]) if any(prefixes) else None
        todo = [i for i, line in enumerate(lines) if line.strip()]
        out = [[AlignedHypothesis("", 0.0, Alignment([], [], torch.zeros(0, 0), "")) if alignments
                else Hypothesis("", 0.0)] for _ in lines]
        for batch, src, src_lens in self._batches([ids[i] for i in todo]):
            rows = [todo[b] for b in batch]  # the batch's lines, in its (length-sorted) order
            prefix = None if forced is None or not any(forced[i] for i in rows) else \
                padded([forced[i] for i in rows]).to(self.device)
            seeds = None if self.sampling is None else \
                [line_seed(self.sampling.seed, lines[i].strip(), prefixes[i]) for i in rows]
            found = self._search(src, src_lens, prefix, seeds, return_attention=alignments)  # tokens (B, N, T)
            n, tokens = found.tokens.size(1), found.tokens.flatten(0, 1)  # (B*N, T)
            texts = self.tokenizer.decode_tgt(strip(tokens, EOS))
            for row, (i, scores) in enumerate(zip(rows, found.scores.tolist())):
                hyps = []
                for r, score in enumerate(scores):
                    if score == float("-inf"):
                        continue
                    text = texts[row * n + r]
                    hyps.append(AlignedHypothesis(text, score, self._alignment(ids[i], tokens[row * n + r],
                                                                               found.attention[row, r], text))
                                if alignments else Hypothesis(text, score))
                out[i] = hyps
        return out

    def _alignment(self, source: list[int], tokens: torch.Tensor, weights: torch.Tensor, text: str) -> Alignment:
        """source ids (S,) EOS included, tokens (T,) EOS then pad, weights (T, S') with S' >= S -> Alignment."""
        row = tokens.tolist()
        steps = row.index(EOS) + 1 if EOS in row else len(row)
        return Alignment([self.tokenizer.src.id_to_piece(i) for i in source], self.tokenizer.tgt_pieces(row[:steps]),
                         weights[:steps, : len(source)].float().cpu(), text)

    def _batches(self, ids: list[list[int]]) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """Length-sorted batches within the token budget: (positions in ids, src (B, S), src_lens (B,))."""
        budget = max(self.max_tokens // self.decoding.beam_size, self.max_source_len + 1)
        for batch in TokenBatchSampler([len(row) for row in ids], [0] * len(ids), budget, shuffle=False):
            rows = [ids[b] for b in batch]
            yield batch, padded(rows).to(self.device), torch.tensor([len(r) for r in rows], device=self.device)

    def _search(self, src: torch.Tensor, src_lens: torch.Tensor, prefix: torch.Tensor | None = None,
                seeds: list[int] | None = None, return_attention: bool = False) -> Hypotheses:
        """src (B, S), src_lens (B,), prefix (B, P) | None PAD-padded forced pieces, seeds: B sampling seeds."""
        with numerics.compute(self.precision, self.device):
            return decode(self.model, src, src_lens, self.decoding, bos=BOS, eos=EOS, return_attention=return_attention,
                          prefix=prefix, sampling=self.sampling, seeds=seeds)


SAMPLING_KEYS = ("sampling", "top_k", "top_p", "temperature", "sampling_seed")  # TranslatorConfig's, for Sampling


def padded(rows: list[list[int]]) -> torch.Tensor:
    """Id lists -> (B, max length) right-padded with PAD."""
    out = torch.full((len(rows), max(map(len, rows))), PAD)
    for r, row in enumerate(rows):
        out[r, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out
