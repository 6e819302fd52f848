"""Batched greedy and beam search over an EncoderDecoder or an Ensemble of them.

Both take a padded source batch and per-sentence output limits and return ``Hypotheses``: tokens
(B, N, T) (EOS included, then pad), their scores (B, N) and, if asked, attention weights (B, N, T, S),
N = 1 for greedy and n_best for beam search. Sentences whose search has ended leave the active batch
(their states, memory and limits are dropped with ``index_select``), so a batch costs what its
sentences need, not what its longest needs; the hypotheses are those of the search that keeps every
sentence to the end. Beam search keeps batch x beam as one (B*K) tensor: no Python loop over sentences
or hypotheses; finished hypotheses are frozen by allowing them only a zero-cost pad until all K of
their sentence are finished, and the model computes no output projection for them. A sentence's K
hypotheses share one row of attention memory. Hypotheses are ranked, and scored, by log-probability
divided by the GNMT length penalty ((5 + length) / 6) ** alpha, length counting EOS.

A forced target prefix (B, P) (PAD-padded piece ids) makes each sentence's first pieces its own prefix
pieces, in greedy and beam search alike; the search continues from them. Forced pieces count as output:
their log-probabilities are in the score and they count in its length (and in the limit, which a longer
prefix overrides: then EOS follows it). Greedy search may draw each piece (sampling.py) instead of taking
the argmax.
"""
from dataclasses import dataclass

import torch

from seq2seq.config import DecodingConfig, check_sampling_search
from seq2seq.inference.ensemble import Ensemble, as_ensemble, rows_of
from seq2seq.inference.sampling import Sampler, Sampling
from seq2seq.model import EncoderDecoder

Model = EncoderDecoder | Ensemble


@dataclass
class Hypotheses:
    """tokens (B, N, T) EOS then pad; scores (B, N) best first; attention (B, N, T, S) | None (zero after EOS)."""
    tokens: torch.Tensor
    scores: torch.Tensor
    attention: torch.Tensor | None

    def best(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The first hypothesis of each sentence: tokens (B, T), attention (B, T, S) | None."""
        return self.tokens[:, 0], None if self.attention is None else self.attention[:, 0]


def output_limits(src_lens: torch.Tensor, max_len: int, ratio: float = 1.5, extra: int = 10) -> torch.Tensor:
    """Most tokens (EOS excluded) each sentence may produce: min(max_len, ratio * |src| + extra)."""
    return (src_lens.float() * ratio + extra).long().clamp(max=max_len)


def argmax(x: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """x (N, V) -> (N,): each row's first maximal index, exactly x.argmax(1) (NaN counts as maximal).

    ATen's CPU argmax reduces element by element; amax is vectorized. So: the maxima of chunks of 64
    columns, the first chunk holding the row's maximum, then argmax within that chunk only: faster on rows
    as wide as a vocabulary; below 1,024 columns torch.argmax is the faster (docs/benchmarks.md).
    """
    n, v = x.shape
    if v < 1024:
        return x.argmax(1)
    whole = v - v % chunk
    heads = x[:, :whole].reshape(n, -1, chunk).amax(2)  # (N, V / chunk)
    if whole < v:
        heads = torch.cat([heads, x[:, whole:].amax(1, keepdim=True)], 1)
    start = heads.argmax(1) * chunk
    cols = (start.unsqueeze(1) + torch.arange(chunk, device=x.device)).clamp_(max=v - 1)  # the last chunk may be short
    return start + x.gather(1, cols).argmax(1)


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    return ((5.0 + lengths.float()) / 6.0) ** alpha


@torch.inference_mode()
def greedy(model: Model, src: torch.Tensor, src_lens: torch.Tensor, limits: torch.Tensor, *,
           bos: int, eos: int, alpha: float = 1.0, return_attention: bool = False,
           prefix: torch.Tensor | None = None, sampler: Sampler | None = None) -> Hypotheses:
    """The most probable next token at every step (or the sampler's draw); score = summed log-probability /
    length penalty. prefix (B, P) | None: pieces forced first (PAD where a sentence's prefix has ended)."""
    model = as_ensemble(model)
    state = model.encode(src, src_lens)
    batch, pad, device = src.size(0), model.pad_id, src.device
    steps = search_steps(limits, prefix)
    limits = limits.to(device)
    tokens = torch.full((batch, steps), pad, dtype=torch.long, device=device)
    logprob = torch.zeros(batch, device=device)
    attention = None
    live = torch.arange(batch, device=device)  # original rows still searching
    prev = torch.full((batch, 1), bos, dtype=torch.long, device=device)
    for t in range(steps):
        logp, state, attn = model.step(prev, state)  # (n, V)
        logp[:, [pad, bos]] = float("-inf")  # never generated
        best = argmax(logp) if sampler is None else sampler.pick(logp, live, t)
        best = torch.where(t >= limits, torch.full_like(best, eos), best)  # forced end at the limit
        if prefix is not None and t < prefix.size(1):
            forced = prefix[live, t]
            best = torch.where(forced != pad, forced, best)
        tokens[live, t] = best
        logprob[live] += logp.gather(1, best.unsqueeze(1)).squeeze(1)
        if return_attention and attn is not None:
            if attention is None:
                attention = torch.zeros(batch, steps, src.size(1), dtype=attn.dtype, device=device)
            attention[live, t] = attn[:, 0]
        going = best != eos
        if not going.any():
            break
        if not going.all():  # finished sentences leave the batch
            keep = going.nonzero().squeeze(1)
            live, best, limits, state = live[keep], best[keep], limits[keep], state.select(keep)
        prev = best.unsqueeze(1)
    lengths = (tokens[:, : t + 1] != pad).sum(1)  # through EOS
    scores = (logprob / length_penalty(lengths, alpha)).unsqueeze(1)
    return Hypotheses(tokens[:, None, : t + 1], scores, None if attention is None else attention[:, None, : t + 1])


@torch.inference_mode()
def beam_search(model: Model, src: torch.Tensor, src_lens: torch.Tensor, limits: torch.Tensor, *,
                bos: int, eos: int, beam_size: int, alpha: float, n_best: int = 1,
                return_attention: bool = False, prefix: torch.Tensor | None = None) -> Hypotheses:
    """The n_best (<= beam_size) best of the beam's finished hypotheses per sentence, best first.
    prefix (B, P) | None: pieces forced first (PAD where a sentence's prefix has ended)."""
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be in [1, beam_size={beam_size}], got {n_best}")
    model = as_ensemble(model)
    batch, k, device, pad = src.size(0), beam_size, src.device, model.pad_id
    steps = search_steps(limits, prefix)
    state = model.encode(src, src_lens).expand(k)  # (B*K) decoder rows, (B) memory rows
    limits = limits.to(device).repeat_interleave(k)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per sentence at the start
    scores = scores.view(-1)  # (n*K,) for the n live sentences
    tokens = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)
    lengths = torch.zeros(batch * k, dtype=torch.long, device=device)
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    attention = None
    live = torch.arange(batch, device=device)  # original sentences still searching
    # what each sentence's K hypotheses end with, written when it leaves the batch
    out_tokens = torch.full((batch, k, steps), pad, dtype=torch.long, device=device)
    out_scores = torch.full((batch, k), float("-inf"), device=device)
    out_lengths = torch.ones(batch, k, dtype=torch.long, device=device)
    out_attention = None

    def leave(rows: torch.Tensor) -> None:
        """Sentences `rows` (positions among the live ones) are done: keep their K hypotheses."""
        nonlocal out_attention
        at = rows_of(rows, k)  # (r*K,)
        sent, length = live[rows], tokens.size(1) - 1
        out_tokens[sent, :, :length] = tokens.index_select(0, at)[:, 1:].view(len(rows), k, length)
        out_scores[sent] = scores.index_select(0, at).view(-1, k)
        out_lengths[sent] = lengths.index_select(0, at).view(-1, k)
        if attention is not None:
            if out_attention is None:
                out_attention = torch.zeros(batch, k, steps, src.size(1), dtype=attention.dtype, device=device)
            out_attention[sent, :, :length] = attention.index_select(0, at).view(len(rows), k, length, -1)

    for t in range(steps):
        n = live.numel()
        base = (torch.arange(n, device=device) * k).unsqueeze(1)  # (n, 1)
        going = (~finished).nonzero().squeeze(1)  # (A,) rows whose hypotheses go on
        logp, state, attn = model.step(tokens[:, -1:], state, going)  # (A, V)
        logp[:, [pad, bos]] = float("-inf")  # never generated
        # A row's rank of a word is monotone in its log-probability, so a sentence's K best extensions are
        # among its rows' K best words each: rank (n*K, K) candidates, not (n*K, V).
        going_logp, going_word = logp.topk(k, dim=1)  # (A, K)
        at_limit = (t >= limits.index_select(0, going)).unsqueeze(1)  # must end now: EOS only, at its own log-probability
        going_logp = going_logp.masked_fill(at_limit, float("-inf"))
        going_logp[:, 0] = torch.where(at_limit[:, 0], logp[:, eos], going_logp[:, 0])
        going_word[:, 0] = torch.where(at_limit[:, 0], eos, going_word[:, 0])
        if prefix is not None and t < prefix.size(1):  # a forced piece is a row's only extension
            forced = prefix[live, t].repeat_interleave(k).index_select(0, going).unsqueeze(1)  # (A, 1)
            force = forced != pad
            going_logp = going_logp.masked_fill(force, float("-inf"))
            going_logp[:, :1] = torch.where(force, logp.gather(1, forced), going_logp[:, :1])
            going_word = torch.where(force, forced, going_word)
        top_logp = torch.full((n * k, k), float("-inf"), device=device).index_copy_(0, going, going_logp)
        top_logp[:, 0].masked_fill_(finished, 0.0)  # a finished hypothesis: only a zero-cost pad
        top_word = torch.full((n * k, k), pad, dtype=torch.long, device=device).index_copy_(0, going, going_word)
        candidates = scores.unsqueeze(1) + top_logp  # (n*K, K)
        cand_len = torch.where(finished, lengths, torch.full_like(lengths, t + 1))
        ranked = candidates / length_penalty(cand_len, alpha).unsqueeze(1)
        _, best = ranked.view(n, k * k).topk(k, dim=1)  # (n, K)
        origin = (base + best // k).view(-1)  # (n*K,) rows the survivors extend
        word = top_word.view(n, k * k).gather(1, best).view(-1)
        scores = candidates.view(n, k * k).gather(1, best).view(-1)
        tokens = torch.cat([tokens.index_select(0, origin), word.unsqueeze(1)], dim=1)
        was_finished = finished.index_select(0, origin)
        lengths = torch.where(was_finished, lengths.index_select(0, origin), torch.full_like(lengths, t + 1))
        finished = was_finished | (word == eos)
        state = state.reorder(origin)
        if return_attention and attn is not None:
            step = attn.index_select(0, origin)
            attention = step if attention is None else torch.cat([attention.index_select(0, origin), step], 1)
        done = finished.view(n, k).all(1)  # (n,)
        if done.all():
            break
        if done.any():  # finished sentences leave the batch
            leave(done.nonzero().squeeze(1))
            stay = (~done).nonzero().squeeze(1)
            rows = rows_of(stay, k)
            live, state = live[stay], state.select(stay, k)
            scores, tokens, lengths, finished, limits = (x.index_select(0, rows) for x in
                                                         (scores, tokens, lengths, finished, limits))
            if attention is not None:
                attention = attention.index_select(0, rows)
    leave(torch.arange(live.numel(), device=device))
    final = out_scores / length_penalty(out_lengths, alpha)  # (B, K)
    top, pick = (x[:, :n_best] for x in final.sort(dim=1, descending=True, stable=True))  # (B, N), ties: lower first
    span = t + 1
    out = out_tokens.gather(1, pick.unsqueeze(2).expand(-1, -1, steps))[:, :, :span]
    if out_attention is not None:
        index = pick[:, :, None, None].expand(-1, -1, steps, out_attention.size(3))
        out_attention = out_attention.gather(1, index)[:, :, :span]
    return Hypotheses(out, top, out_attention)


def search_steps(limits: torch.Tensor, prefix: torch.Tensor | None) -> int:
    """Steps a batch may take: its largest limit, or prefix length, plus the EOS step."""
    return max(int(limits.max()), 0 if prefix is None else prefix.size(1)) + 1


def strip(tokens: torch.Tensor, eos: int) -> list[list[int]]:
    """tokens (B, T) -> one id list per sentence, cut before the first EOS."""
    rows = []
    for row in tokens.tolist():
        rows.append(row[: row.index(eos)] if eos in row else row)
    return rows


def decode(model: Model, src: torch.Tensor, src_lens: torch.Tensor, decoding: DecodingConfig, *,
           bos: int, eos: int, return_attention: bool = False, prefix: torch.Tensor | None = None,
           sampling: Sampling | None = None, seeds: list[int] | None = None) -> Hypotheses:
    """Greedy when decoding.beam_size is 1, else beam search keeping decoding.n_best hypotheses; with
    `sampling` (beam_size 1 only), greedy search draws each piece, sentence b from seeds[b]'s generator."""
    limits = output_limits(src_lens, decoding.max_len)
    sampler = None
    if sampling is not None:
        check_sampling_search(sampling.method, decoding.beam_size, decoding.n_best)
        if seeds is None or len(seeds) != src.size(0):
            raise ValueError(f"sampling needs one seed per sentence: {src.size(0)} sentences, seeds {seeds!r}")
        sampler = Sampler(sampling, seeds, limits, search_steps(limits, prefix), src.device)
    if decoding.beam_size == 1:
        return greedy(model, src, src_lens, limits, bos=bos, eos=eos, alpha=decoding.alpha,
                      return_attention=return_attention, prefix=prefix, sampler=sampler)
    return beam_search(model, src, src_lens, limits, bos=bos, eos=eos, beam_size=decoding.beam_size,
                       alpha=decoding.alpha, n_best=decoding.n_best, return_attention=return_attention,
                       prefix=prefix)


def decode_ids(model: Model, src: torch.Tensor, src_lens: torch.Tensor, decoding: DecodingConfig, *,
               bos: int, eos: int) -> list[list[int]]:
    """One id list per sentence (the best hypothesis), EOS removed."""
    return strip(decode(model, src, src_lens, decoding, bos=bos, eos=eos).tokens[:, 0], eos)
