"""The decoder: target embeddings read by a GRU (model/gru.py: nn.GRU's semantics) started from the
bridged encoder state.

  luong     GRU over the whole target in one fused call, then attention with its outputs as queries.
  bahdanau  attention with the previous top-layer state as query, context fed into the GRU input:
            inherently step by step.
  none      the plain model: only h_0 carries the source.
A readout layer tanh(W [h_t; c_t]) (B, T, R) feeds the output projection to the vocabulary.

Search may step the GRU its own way (``gru_step``: seq2seq/inference/cpu_step.py looks the first
layer's input gates up in a table); the model itself always runs its GRU.
"""
from collections.abc import Callable

import torch
from torch import nn

from seq2seq.model.attention import ATTENTION, Memory
from seq2seq.model.dropout import FastDropout
from seq2seq.model.gru import GRU

GRUStep = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Decoder(nn.Module):
    def __init__(self, vocab_size: int, input_size: int, hidden_size: int, num_layers: int,
                 dropout: float, bias: bool, pad_id: int, memory_size: int, attention: str,
                 readout_size: int, layer_norm: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, input_size, padding_idx=pad_id)
        self.dropout = FastDropout(dropout)
        self.attention = ATTENTION[attention](hidden_size, memory_size) if attention != "none" else None
        self.feeds_context = attention == "bahdanau"
        rnn_input = input_size + (memory_size if self.feeds_context else 0)
        self.rnn = GRU(rnn_input, hidden_size, num_layers, bias=bias, dropout=dropout if num_layers > 1 else 0.0,
                       layer_norm=layer_norm)
        self.readout = nn.Linear(hidden_size + (memory_size if self.attention else 0), readout_size)
        self.output = nn.Linear(readout_size, vocab_size)

    def memory(self, values: torch.Tensor, mask: torch.Tensor) -> Memory:
        """Encoder output (B, S, M) and source mask (B, S) -> Memory with keys projected once."""
        keys = self.attention.keys(values) if self.attention is not None else None
        return Memory(values, keys, mask)

    def forward(self, tgt_in: torch.Tensor, hidden: torch.Tensor, memory: Memory, rows: torch.Tensor | None = None,
                gru_step: GRUStep | None = None, positions: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """tgt_in (B, T), hidden (L, B, H) -> logits (B, T, V), hidden (L, B, H), attn (B, T, S) | None.

        Teacher forcing passes the whole shifted target; search passes T = 1 and the returned state,
        and may ask for the logits of some rows only, (N, T, V) for `rows` (N,): the output projection
        is most of a step's arithmetic, and a beam's ended hypotheses need none. The memory may hold one
        row per K rows of tgt_in (a sentence's beam: attention.py). Training asks for the logits of the
        target's non-pad `positions` (B, T) bool only: (N, V), N = positions.sum(). ``gru_step`` (T = 1, luong and none
        only) replaces embedding and GRU: prev (B,), hidden (L, B, H) -> out (B, 1, H), hidden.
        """
        if self.feeds_context:
            out, ctx, attn, hidden = self._step_by_step(self.dropout(self.embed(tgt_in)), hidden, memory)
        else:
            if gru_step is not None:
                out, hidden = gru_step(tgt_in[:, 0], hidden)
            else:
                out, hidden = self.rnn(self.dropout(self.embed(tgt_in)), hidden)  # (B, T, H): one fused call
            ctx, attn = self.attention(out, memory) if self.attention is not None else (None, None)
        features = out if ctx is None else torch.cat([out, ctx], dim=-1)
        readout = torch.tanh(self.readout(self.dropout(features)))  # (B, T, R)
        if rows is not None:
            readout = readout.index_select(0, rows)
        if positions is not None:
            readout = readout[positions]  # (N, R)
        return self.output(self.dropout(readout)), hidden, attn

    def _step_by_step(self, x: torch.Tensor, hidden: torch.Tensor, memory: Memory):
        outs, ctxs, attns = [], [], []
        for t in range(x.size(1)):
            ctx, attn = self.attention(hidden[-1].unsqueeze(1), memory)  # (B, 1, M), (B, 1, S)
            out, hidden = self.rnn(torch.cat([x[:, t : t + 1], ctx.to(x.dtype)], dim=-1), hidden)
            outs.append(out), ctxs.append(ctx), attns.append(attn)
        return torch.cat(outs, 1), torch.cat(ctxs, 1), torch.cat(attns, 1), hidden
