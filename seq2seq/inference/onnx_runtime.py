"""Translation from an exported folder (scripts/export.py format=onnx) with onnxruntime, SentencePiece and
numpy only: torch is never imported (tests/test_onnx.py checks it in a fresh interpreter).

    from seq2seq.inference.onnx_runtime import OnnxTranslator
    OnnxTranslator.load("exported/", beam_size=5, n_best=3).translate_n_best(["A dog runs."], prefixes=["Ein"])

The folder (FOLDER_FORMAT; docs/deployment.md): ``encoder.onnx`` src (B, S) int64, src_lens (B,) int64 ->
memory (B, S, M), keys (B, S, Hq) (attention models only), h0 (L, B, H); ``decoder_step.onnx`` prev (N,)
int64, hidden (L, N, H), rows (A,) int64 and, with attention, memory, keys, mask (B, S) bool -> logp (A, V)
float32 (log_softmax of rows `rows`), hidden_out (L, N, H), attention (N, S); N = B*K, a sentence's K beam rows
consecutive, its memory one row. ``spm.src.model`` (and ``spm.tgt.model`` when not joint), ``config.json``.

Greedy and beam search here are seq2seq/inference/search.py's, step for step, in numpy (the same
candidates, limits, length penalty, prefix forcing, finished sentences leaving the batch, n-best order), so
a model gives PyTorch's translations up to the graphs' float differences. Not here: ensembles, int8/bf16,
sampling, alignments (each one error line).
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seq2seq.data.tokenizer import BOS, EOS, PAD, Tokenizer
from seq2seq.inference.lines import Hypothesis, LineTranslator

FOLDER_FORMAT = "seq2seq-gru-onnx/1"
ENCODER, STEP, CONFIG = "encoder.onnx", "decoder_step.onnx", "config.json"
MEMORY = ("memory", "keys", "mask")  # the step graph's memory inputs, one row per sentence


class OnnxFolderError(ValueError):
    """The folder is missing, incomplete or not an export; or the runtime cannot do what was asked."""


@dataclass
class Search:
    """DecodingConfig's keys (seq2seq/config.py checks them when the options come through a command)."""
    beam_size: int
    alpha: float
    max_len: int
    n_best: int


class OnnxModel:
    """The two graphs in onnxruntime sessions: ``encode`` and ``step`` as Ensemble's (ensemble.py), on numpy."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        import onnxruntime as ort  # here, so that importing this module (cli.py's errors) needs no onnxruntime

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.encoder, self.decoder = (ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
                                      for name in (ENCODER, STEP))
        self.memory_inputs = [i.name for i in self.decoder.get_inputs() if i.name in MEMORY]

    def encode(self, src: np.ndarray, src_lens: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """src (B, S), src_lens (B,) -> memory {memory (B, S, M), keys (B, S, Hq), mask (B, S)} ({} without
        attention), h0 (L, B, H)."""
        names = [o.name for o in self.encoder.get_outputs()]
        out = dict(zip(names, self.encoder.run(None, {"src": src, "src_lens": src_lens})))
        out["mask"] = np.arange(src.shape[1]) < src_lens[:, None]
        return {k: out[k] for k in self.memory_inputs}, out["h0"]

    def step(self, prev: np.ndarray, hidden: np.ndarray, memory: dict[str, np.ndarray],
             rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """prev (N,), hidden (L, N, H) -> log-probabilities (A, V) of rows `rows` (all if None), hidden (L, N, H)."""
        rows = np.arange(len(prev)) if rows is None else rows
        logp, hidden = self.decoder.run(["logp", "hidden_out"], {"prev": prev, "hidden": hidden, "rows": rows, **memory})
        logp[:, [PAD, BOS]] = -np.inf  # never generated
        return logp, hidden


def select(memory: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in memory.items()}


def rows_of(sentences: np.ndarray, k: int) -> np.ndarray:
    return (sentences[:, None] * k + np.arange(k)).reshape(-1)


def output_limits(src_lens: np.ndarray, max_len: int, ratio: float = 1.5, extra: int = 10) -> np.ndarray:
    """search.output_limits: min(max_len, ratio * |src| + extra), in float32 as there."""
    return np.minimum((src_lens.astype(np.float32) * ratio + extra).astype(np.int64), max_len)


def length_penalty(lengths: np.ndarray, alpha: float) -> np.ndarray:
    return ((5.0 + lengths.astype(np.float32)) / 6.0) ** alpha


def search_steps(limits: np.ndarray, prefix: np.ndarray | None) -> int:
    return max(int(limits.max()), 0 if prefix is None else prefix.shape[1]) + 1


def topk(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """torch.topk(x, k, dim=1) for x (N, C): values and indices, best first (ties: lower index first).

    Over a vocabulary, argpartition of every whole row was half of a beam search's time: the row is cut into
    blocks of `width` (a divisor of C), the k blocks with the largest maxima hold the k largest values, and
    only those k * width candidates are partitioned."""
    n, c = x.shape
    width = next((w for w in range(128, 15, -1) if c % w == 0), None)
    if k >= c:
        index = np.tile(np.arange(c), (n, 1))
    elif width is None or c // width < 4 * k:
        index = np.argpartition(-x, k - 1, axis=1)[:, :k]
    else:
        blocks = np.argpartition(-x.reshape(n, c // width, width).max(2), k - 1, axis=1)[:, :k]  # (N, k)
        candidates = (blocks[:, :, None] * width + np.arange(width)).reshape(n, k * width)
        best = np.argpartition(-np.take_along_axis(x, candidates, 1), k - 1, axis=1)[:, :k]
        index = np.take_along_axis(candidates, best, 1)
    values = np.take_along_axis(x, index, 1)
    order = np.lexsort((index, -values))
    return np.take_along_axis(values, order, 1), np.take_along_axis(index, order, 1)


def greedy(model: OnnxModel, src: np.ndarray, src_lens: np.ndarray, limits: np.ndarray, alpha: float,
           prefix: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """search.greedy: tokens (B, 1, T), scores (B, 1)."""
    memory, hidden = model.encode(src, src_lens)
    batch, steps = len(src), search_steps(limits, prefix)
    tokens = np.full((batch, steps), PAD, dtype=np.int64)
    logprob = np.zeros(batch, dtype=np.float32)
    live, prev = np.arange(batch), np.full(batch, BOS, dtype=np.int64)
    for t in range(steps):
        logp, hidden = model.step(prev, hidden, memory)
        best = np.where(t >= limits, EOS, logp.argmax(1))
        if prefix is not None and t < prefix.shape[1]:
            forced = prefix[live, t]
            best = np.where(forced != PAD, forced, best)
        tokens[live, t] = best
        logprob[live] += logp[np.arange(len(best)), best]
        going = best != EOS
        if not going.any():
            break
        if not going.all():
            keep = np.flatnonzero(going)
            live, best, limits, hidden, memory = live[keep], best[keep], limits[keep], hidden[:, keep], select(memory, keep)
        prev = best
    lengths = (tokens[:, : t + 1] != PAD).sum(1)
    return tokens[:, None, : t + 1], (logprob / length_penalty(lengths, alpha))[:, None]


def beam_search(model: OnnxModel, src: np.ndarray, src_lens: np.ndarray, limits: np.ndarray, beam_size: int,
                alpha: float, n_best: int, prefix: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """search.beam_search: tokens (B, N, T), scores (B, N), best first."""
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be in [1, beam_size={beam_size}], got {n_best}")
    batch, k, steps = len(src), beam_size, search_steps(limits, prefix)
    memory, hidden = model.encode(src, src_lens)
    hidden, limits = hidden.repeat(k, axis=1), limits.repeat(k)
    scores = np.full((batch, k), -np.inf, dtype=np.float32)
    scores[:, 0] = 0.0
    scores = scores.reshape(-1)
    tokens = np.full((batch * k, 1), BOS, dtype=np.int64)
    lengths, finished = np.zeros(batch * k, dtype=np.int64), np.zeros(batch * k, dtype=bool)
    live = np.arange(batch)
    out_tokens = np.full((batch, k, steps), PAD, dtype=np.int64)
    out_scores = np.full((batch, k), -np.inf, dtype=np.float32)
    out_lengths = np.ones((batch, k), dtype=np.int64)

    def leave(rows: np.ndarray) -> None:
        at, sent, length = rows_of(rows, k), live[rows], tokens.shape[1] - 1
        out_tokens[sent, :, :length] = tokens[at, 1:].reshape(len(rows), k, length)
        out_scores[sent], out_lengths[sent] = scores[at].reshape(-1, k), lengths[at].reshape(-1, k)

    for t in range(steps):
        n = len(live)
        going = np.flatnonzero(~finished)
        logp, hidden = model.step(tokens[:, -1], hidden, memory, going)  # (A, V)
        going_logp, going_word = topk(logp, k)
        at_limit = (t >= limits[going])[:, None]  # must end now: EOS only, at its own log-probability
        going_logp = np.where(at_limit, -np.inf, going_logp)
        going_logp[:, 0] = np.where(at_limit[:, 0], logp[:, EOS], going_logp[:, 0])
        going_word[:, 0] = np.where(at_limit[:, 0], EOS, going_word[:, 0])
        if prefix is not None and t < prefix.shape[1]:  # a forced piece is a row's only extension
            forced = prefix[live, t].repeat(k)[going][:, None]  # (A, 1)
            force = forced != PAD
            going_logp = np.where(force, -np.inf, going_logp)
            going_logp[:, :1] = np.where(force, np.take_along_axis(logp, forced, 1), going_logp[:, :1])
            going_word = np.where(force, forced, going_word)
        top_logp = np.full((n * k, k), -np.inf, dtype=np.float32)
        top_logp[going] = going_logp
        top_logp[finished, 0] = 0.0  # a finished hypothesis: only a zero-cost pad
        top_word = np.full((n * k, k), PAD, dtype=np.int64)
        top_word[going] = going_word
        candidates = scores[:, None] + top_logp  # (n*K, K)
        ranked = candidates / length_penalty(np.where(finished, lengths, t + 1), alpha)[:, None]
        _, best = topk(ranked.reshape(n, k * k), k)  # (n, K)
        origin = (np.arange(n)[:, None] * k + best // k).reshape(-1)
        word = np.take_along_axis(top_word.reshape(n, k * k), best, 1).reshape(-1)
        scores = np.take_along_axis(candidates.reshape(n, k * k), best, 1).reshape(-1)
        tokens = np.concatenate([tokens[origin], word[:, None]], 1)
        was_finished = finished[origin]
        lengths = np.where(was_finished, lengths[origin], t + 1)
        finished, hidden = was_finished | (word == EOS), hidden[:, origin]
        done = finished.reshape(n, k).all(1)
        if done.all():
            break
        if done.any():  # finished sentences leave the batch
            leave(np.flatnonzero(done))
            stay = np.flatnonzero(~done)
            rows = rows_of(stay, k)
            live, memory, hidden = live[stay], select(memory, stay), hidden[:, rows]
            scores, tokens, lengths, finished, limits = (x[rows] for x in (scores, tokens, lengths, finished, limits))
    leave(np.arange(len(live)))
    final = out_scores / length_penalty(out_lengths, alpha)  # (B, K)
    pick = np.argsort(-final, axis=1, kind="stable")[:, :n_best]  # ties: lower first
    return np.take_along_axis(out_tokens, pick[:, :, None], 1)[:, :, : t + 1], np.take_along_axis(final, pick, 1)


def strip(tokens: np.ndarray) -> list[list[int]]:
    """tokens (B, T) -> one id list per sentence, cut before the first EOS."""
    return [row[: row.index(EOS)] if EOS in row else row for row in tokens.tolist()]


def padded(rows: list[list[int]]) -> np.ndarray:
    out = np.full((len(rows), max(map(len, rows))), PAD, dtype=np.int64)
    for r, row in enumerate(rows):
        out[r, : len(row)] = row
    return out


def read_folder(folder: str | Path) -> dict:
    """config.json of an export folder, checked: one clear error for a model file, a missing or foreign folder."""
    path = Path(folder)
    if path.is_file():
        raise OnnxFolderError(f"model_file={path}: backend=onnx reads the folder that scripts/export.py writes, not a "
                              f"model file (export it first: python scripts/export.py model_file={path} format=onnx out=DIR)")
    missing = [name for name in (CONFIG, ENCODER, STEP, "spm.src.model") if not (path / name).is_file()]
    if missing:
        raise OnnxFolderError(f"model_file={path}: not an ONNX export folder (missing {', '.join(missing)}; "
                              f"scripts/export.py format=onnx writes one)")
    config = json.loads((path / CONFIG).read_text())
    if config.get("format") != FOLDER_FORMAT:
        raise OnnxFolderError(f"{path / CONFIG}: format {config.get('format')!r}, this runtime reads {FOLDER_FORMAT!r}")
    return config


class OnnxTranslator(LineTranslator):
    """Batched greedy / beam search over an export folder: Translator's interface (lines.py) without torch."""

    def __init__(self, folder: str | Path, decoding: Search, max_source_len: int = 400, max_tokens: int = 6000,
                 threads: int | None = None) -> None:
        self.folder, self.config = Path(folder), read_folder(folder)
        self.tokenizer = Tokenizer.load(self.folder)
        self.model, self.decoding = OnnxModel(self.folder, threads), decoding
        self.max_source_len, self.max_tokens = max_source_len, max_tokens

    @classmethod
    def load(cls, folder: str | Path, beam_size: int | None = None, alpha: float | None = None,
             max_len: int | None = None, n_best: int | None = None, **options) -> "OnnxTranslator":
        """As Translator.load: beam_size, alpha, max_len, n_best override the folder's decoding defaults (a smaller
        beam than the folder's keeps n_best valid); options: max_source_len, max_tokens, threads."""
        stored = read_folder(folder)["decoding"]
        wanted = {"beam_size": beam_size, "alpha": alpha, "max_len": max_len, "n_best": n_best}
        decoding = {**stored, **{k: v for k, v in wanted.items() if v is not None}}
        if beam_size is not None and n_best is None:
            decoding["n_best"] = min(decoding["n_best"], beam_size)
        return cls(folder, Search(**decoding), **options)

    @property
    def has_attention(self) -> bool:
        return bool(self.model.memory_inputs)

    def check_alignments(self) -> None:
        raise OnnxFolderError("alignments: the ONNX runtime gives translations and scores only (use backend=torch)")

    def info(self) -> dict:
        """What is loaded (the server's model-info answer), as Translator.info."""
        return {"backend": "onnx", "models": 1, "model": self.config["model"],
                "src_vocab_size": self.tokenizer.src_vocab_size, "tgt_vocab_size": self.tokenizer.tgt_vocab_size,
                "decoding": vars(self.decoding), "precision": "fp32", "quantize": "none",
                "max_source_len": self.max_source_len, "device": "cpu"}

    def _translate_block(self, lines: list[str], prefixes: list[str | None], first: int = 1,
                         alignments: bool = False) -> list[list[Hypothesis]]:
        """As Translator._translate_block: blank lines give one empty hypothesis, -inf hypotheses are dropped."""
        ids = self._encode(lines, first)
        forced = self.tokenizer.encode_tgt([p or "" for p in prefixes]) if any(prefixes) else None
        todo = [i for i, line in enumerate(lines) if line.strip()]
        out = [[Hypothesis("", 0.0)] for _ in lines]
        d = self.decoding
        for batch in self._batches([len(ids[i]) for i in todo]):
            rows = [todo[b] for b in batch]
            src, src_lens = padded([ids[i] for i in rows]), np.array([len(ids[i]) for i in rows])
            prefix = None if forced is None or not any(forced[i] for i in rows) else padded([forced[i] for i in rows])
            limits = output_limits(src_lens, d.max_len)
            tokens, scores = greedy(self.model, src, src_lens, limits, d.alpha, prefix) if d.beam_size == 1 else \
                beam_search(self.model, src, src_lens, limits, d.beam_size, d.alpha, d.n_best, prefix)
            n = tokens.shape[1]
            texts = self.tokenizer.decode_tgt(strip(tokens.reshape(-1, tokens.shape[2])))
            for row, i in enumerate(rows):
                out[i] = [Hypothesis(texts[row * n + r], float(s)) for r, s in enumerate(scores[row]) if s != -np.inf]
        return out

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Length-sorted batches whose size x longest stays within Translator's budget (TokenBatchSampler's rule)."""
        budget = max(self.max_tokens // self.decoding.beam_size, self.max_source_len + 1)
        order, batches = np.argsort(lengths, kind="stable").tolist(), []
        for i in order:
            if batches and (len(batches[-1]) + 1) * lengths[i] <= budget:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches
