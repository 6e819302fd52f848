"""Greedy and beam search as they were before finished sentences left the batch (commit 7a1c61a).

Kept verbatim as the reference that seq2seq.inference.search must reproduce: tests/test_search.py compares both.
"""
import torch

from seq2seq.model import EncoderDecoder


@torch.inference_mode()
def greedy(model: EncoderDecoder, src: torch.Tensor, src_lens: torch.Tensor, limits: torch.Tensor, *,
           bos: int, eos: int, return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    memory, hidden = model.encode(src, src_lens)
    batch, pad = src.size(0), model.pad_id
    limits = limits.to(src.device)
    prev = torch.full((batch, 1), bos, dtype=torch.long, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    tokens, attns = [], []
    for t in range(int(limits.max()) + 1):
        logits, hidden, attn = model.decoder(prev, hidden, memory)
        logits[:, -1, [pad, bos]] = float("-inf")  # never generated
        best = logits[:, -1].argmax(-1)
        best = torch.where(t >= limits, torch.full_like(best, eos), best)  # forced end at the limit
        best = best.masked_fill(finished, pad)
        tokens.append(best)
        if return_attention and attn is not None:
            attns.append(attn)
        finished |= best == eos
        if finished.all():
            break
        prev = best.unsqueeze(1)
    attention = torch.cat(attns, 1) if attns else None
    return torch.stack(tokens, 1), attention


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    return ((5.0 + lengths.float()) / 6.0) ** alpha


@torch.inference_mode()
def beam_search(model: EncoderDecoder, src: torch.Tensor, src_lens: torch.Tensor, limits: torch.Tensor, *,
                bos: int, eos: int, beam_size: int, alpha: float, return_attention: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    batch, k, device, pad = src.size(0), beam_size, src.device, model.pad_id
    memory, hidden = model.encode(src, src_lens)
    expand = torch.arange(batch, device=device).repeat_interleave(k)  # (B*K,)
    memory, hidden = memory.select(expand), hidden.index_select(1, expand)
    limits = limits.to(device).repeat_interleave(k)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per sentence at the start
    scores = scores.view(-1)  # (B*K,)
    tokens = torch.full((batch * k, 1), bos, dtype=torch.long, device=device)
    lengths = torch.zeros(batch * k, dtype=torch.long, device=device)
    finished = torch.zeros(batch * k, dtype=torch.bool, device=device)
    attention = None
    base = (torch.arange(batch, device=device) * k).unsqueeze(1)  # (B, 1)
    for t in range(int(limits.max()) + 1):
        logits, hidden, attn = model.decoder(tokens[:, -1:], hidden, memory)
        logp = torch.log_softmax(logits[:, -1].float(), dim=-1)  # (B*K, V)
        vocab = logp.size(1)
        logp[:, [pad, bos]] = float("-inf")  # never generated
        at_limit = (t >= limits) & ~finished  # must end now: EOS only, at its own log-probability
        logp[at_limit] = logp[at_limit].masked_fill(torch.arange(vocab, device=device) != eos, float("-inf"))
        logp[finished] = float("-inf")
        logp[finished, pad] = 0.0
        candidates = scores.unsqueeze(1) + logp  # (B*K, V)
        cand_len = torch.where(finished, lengths, torch.full_like(lengths, t + 1))
        ranked = candidates / length_penalty(cand_len, alpha).unsqueeze(1)
        _, best = ranked.view(batch, k * vocab).topk(k, dim=1)  # (B, K)
        origin = (base + best // vocab).view(-1)  # (B*K,) rows the survivors extend
        word = (best % vocab).view(-1)
        scores = candidates.view(-1).index_select(0, origin * vocab + word)
        tokens = torch.cat([tokens.index_select(0, origin), word.unsqueeze(1)], dim=1)
        hidden = hidden.index_select(1, origin)
        was_finished = finished.index_select(0, origin)
        lengths = torch.where(was_finished, lengths.index_select(0, origin), torch.full_like(lengths, t + 1))
        finished = was_finished | (word == eos)
        if return_attention and attn is not None:
            step = attn.index_select(0, origin)
            attention = step if attention is None else torch.cat([attention.index_select(0, origin), step], 1)
        if finished.all():
            break
    final = (scores / length_penalty(lengths, alpha)).view(batch, k)
    pick = (base.squeeze(1) + final.argmax(1))  # (B,)
    out = tokens.index_select(0, pick)[:, 1:]
    return out, None if attention is None else attention.index_select(0, pick)
