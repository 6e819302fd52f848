"""Attention over the encoder output ("memory").

Keys are projected once per source sentence (``Memory``); each decoder query then costs one
batched matrix product. Both variants map query (B, T, Hq) -> context (B, T, M), weights (B, T, S).
Beam search keeps one memory row per sentence for its K hypotheses: a query batch of B*K rows (a
sentence's K rows consecutive) over a memory of B rows is read as (B, K*T, Hq), so that each
sentence's memory is read once per step, not K times.
  luong     score(q, m) = q . (W m)               (Luong et al. 2015, "general")
  bahdanau  score(q, m) = v . tanh(W_q q + W_m m)  (Bahdanau et al. 2015, additive)
"""
from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.model.gru import state_dtype


@dataclass
class Memory:
    """What the decoder attends to. values (B, S, M), keys (B, S, Hq), mask (B, S) True at tokens."""
    values: torch.Tensor
    keys: torch.Tensor | None
    mask: torch.Tensor

    def select(self, index: torch.Tensor) -> "Memory":
        """Rows `index` of the batch (search drops the sentences that have ended with this)."""
        keys = None if self.keys is None else self.keys.index_select(0, index)
        return Memory(self.values.index_select(0, index), keys, self.mask.index_select(0, index))


class LuongAttention(nn.Module):
    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        self.key = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, values: torch.Tensor) -> torch.Tensor:
        return self.key(values)  # (B, S, Hq)

    def forward(self, query: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        q = _per_sentence(query, memory)  # (B, K*T, Hq)
        scores = torch.bmm(q, memory.keys.transpose(1, 2))  # (B, K*T, S)
        return _attend(scores, memory, query.shape[:2])


class BahdanauAttention(nn.Module):
    def __init__(self, query_size: int, memory_size: int) -> None:
        super().__init__()
        self.key = nn.Linear(memory_size, query_size, bias=False)
        self.query = nn.Linear(query_size, query_size, bias=False)
        self.v = nn.Linear(query_size, 1, bias=False)

    def keys(self, values: torch.Tensor) -> torch.Tensor:
        return self.key(values)  # (B, S, Hq)

    def forward(self, query: torch.Tensor, memory: Memory) -> tuple[torch.Tensor, torch.Tensor]:
        q = _per_sentence(self.query(query), memory).unsqueeze(2)  # (B, K*T, 1, Hq)
        scores = self.v(torch.tanh(q + memory.keys.unsqueeze(1))).squeeze(3)  # (B, K*T, S)
        return _attend(scores, memory, query.shape[:2])


def _per_sentence(query: torch.Tensor, memory: Memory) -> torch.Tensor:
    """query (B*K, T, Hq) -> (B, K*T, Hq) for a memory of B rows."""
    return query.reshape(memory.mask.size(0), -1, query.size(-1))


def _attend(scores: torch.Tensor, memory: Memory, shape: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
    """scores (B, K*T, S) -> context (B*K, T, M), weights (B*K, T, S); shape = (B*K, T)."""
    scores = scores.masked_fill(~memory.mask.unsqueeze(1), float("-inf"))
    weights = torch.softmax(scores.to(state_dtype(scores.dtype)), dim=-1).to(memory.values.dtype)  # (B, K*T, S), float32 at least
    context = torch.bmm(weights, memory.values)  # (B, K*T, M)
    return context.view(*shape, -1), weights.view(*shape, -1)


ATTENTION = {"luong": LuongAttention, "bahdanau": BahdanauAttention}  # model.attention; "none": no attention
