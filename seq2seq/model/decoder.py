"""The decoder: target embeddings read by GRUs (model/gru.py: nn.GRU's semantics) started from the
bridged encoder state.

``model.decoder: gru`` (the default), one GRU of L layers wired as ``model.attention`` says:
  luong     GRU over the whole target in one fused call, then attention with its outputs as queries.
  bahdanau  attention with the previous top-layer state as query, context fed into the GRU input:
            inherently step by step.
  none      the plain model: only h_0 carries the source.

``model.decoder: cgru``, the conditional GRU (Nematus, Sennrich et al. 2017; LIUM's nmtpytorch; Marian's
``s2s``), step by step; ``model.attention`` (luong or bahdanau) is the score it queries between its GRUs:
    s'_t     = GRU_1(E y_(t-1), s_(t-1))     rnn          (B, 1, E) from (1, B, H) -> (B, 1, H), one layer
    c_t, a_t = attention(s'_t, memory)       context (B, 1, M), weights (B, 1, S)
    s_t      = GRU_2(c_t, s'_t)              context_rnn  (B, 1, M) from s'_t -> (B, 1, H), its layer 0
    s^l_t    = GRU_2 layer l(s^(l-1)_t, s^l_(t-1)), l = 1 .. L-1: layers stacked above (Marian's s2s stacks so)
The state (L, B, H) is s_t and the stacked layers' states (s'_t lives within one step), the shape of the
other decoders', so bridge, search, beams and ensembles see no difference. Its readout is Luong's,
tanh(W [s^(L-1)_t; c_t]): from the state and the context, as Nematus' deep output less its y_(t-1) term
(LIUM reads s_t alone). Why a ``model.decoder`` key and not a fourth ``model.attention`` value: the
conditional GRU is a wiring of the recurrence, not a score; the key keeps the score a free choice
(Nematus and LIUM use the additive one, bahdanau; luong's is cheaper), and leaves every old value and
model file meaning what it meant.

A readout layer tanh(W [h_t; c_t]) (B, T, R) (h_t alone without attention) feeds the output projection
to the vocabulary. Search may step the GRU that reads the target its own way (``gru_step``:
seq2seq/inference/cpu_step.py looks its first layer's input gates up in a table): luong's and none's GRU,
the cGRU's GRU_1; the model itself always runs its GRUs.
"""
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from seq2seq.model.attention import ATTENTION, Memory
from seq2seq.model.dropout import FastDropout
from seq2seq.model.gru import GRU

GRUStep = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
StepOutput = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # out, context, attention, hidden
Step = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor, Memory], StepOutput]


class Decoder(nn.Module):
    def __init__(self, vocab_size: int, input_size: int, hidden_size: int, num_layers: int,
                 dropout: float, bias: bool, pad_id: int, memory_size: int, attention: str,
                 readout_size: int, layer_norm: bool = False, conditional: bool = False,
                 output_dropout: float = 0.0) -> None:
        super().__init__()
        gru = partial(_gru, hidden_size=hidden_size, bias=bias, dropout=dropout, layer_norm=layer_norm)
        self.embed = nn.Embedding(vocab_size, input_size, padding_idx=pad_id)
        self.dropout = FastDropout(dropout)
        self.output_dropout = FastDropout(output_dropout)
        self.attention = ATTENTION[attention](hidden_size, memory_size) if attention != "none" else None
        self.conditional = conditional
        self.feeds_context = attention == "bahdanau" and not conditional
        self.rnn = gru(input_size + (memory_size if self.feeds_context else 0), num_layers=1 if conditional else num_layers)
        if conditional:
            self.context_rnn = gru(memory_size, num_layers=num_layers)
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
        target's non-pad `positions` (B, T) bool only: (N, V), N = positions.sum(). ``gru_step`` (T = 1; luong,
        none, and cgru's GRU_1) replaces embedding and ``rnn``: prev (B,), hidden (L', B, H) -> out (B, 1, H),
        hidden, L' = rnn.num_layers.
        """
        x = self.dropout(self.embed(tgt_in)) if gru_step is None else None  # (B, T, E)
        if self.conditional or self.feeds_context:
            step = partial(self._cgru_step, gru_step=gru_step) if self.conditional else self._bahdanau_step
            out, ctx, attn, hidden = self._step_by_step(step, tgt_in, x, hidden, memory)
        else:
            out, hidden = self._read(tgt_in, x, hidden, gru_step)  # (B, T, H): one fused call
            ctx, attn = self.attention(out, memory) if self.attention is not None else (None, None)
        features = out if ctx is None else torch.cat([out, ctx], dim=-1)
        # (B, T, R); its dropout before the row selection, so that training draws the masks it always drew
        readout = self.output_dropout(torch.tanh(self.readout(self.dropout(features))))
        if rows is not None:
            readout = readout.index_select(0, rows)
        if positions is not None:
            readout = readout[positions]  # (N, R)
        return self.output(readout), hidden, attn

    def _read(self, prev: torch.Tensor, x: torch.Tensor | None, hidden: torch.Tensor, gru_step: GRUStep | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``rnn`` over the target embeddings x (B, T, E), or gru_step over the pieces prev (B, 1) when given."""
        return self.rnn(x, hidden) if gru_step is None else gru_step(prev[:, 0], hidden)

    def _step_by_step(self, step: Step, tgt_in: torch.Tensor, x: torch.Tensor | None, hidden: torch.Tensor,
                      memory: Memory) -> StepOutput:
        """bahdanau's and cgru's loop: one `step` per target position -> out (B, T, H), context (B, T, M),
        attention (B, T, S), hidden (L, B, H)."""
        outs, ctxs, attns = [], [], []
        for t in range(tgt_in.size(1)):
            x_t = None if x is None else x[:, t : t + 1]
            out, ctx, attn, hidden = step(tgt_in[:, t : t + 1], x_t, hidden, memory)
            outs.append(out), ctxs.append(ctx), attns.append(attn)
        return torch.cat(outs, 1), torch.cat(ctxs, 1), torch.cat(attns, 1), hidden

    def _bahdanau_step(self, prev: torch.Tensor, x: torch.Tensor, hidden: torch.Tensor, memory: Memory) -> StepOutput:
        """Attention queried with the previous top state, its context beside x (B, 1, E) in the GRU's input."""
        ctx, attn = self.attention(hidden[-1].unsqueeze(1), memory)  # (B, 1, M), (B, 1, S)
        out, hidden = self.rnn(torch.cat([x, ctx.to(x.dtype)], dim=-1), hidden)
        return out, ctx, attn, hidden

    def _cgru_step(self, prev: torch.Tensor, x: torch.Tensor | None, hidden: torch.Tensor, memory: Memory,
                   gru_step: GRUStep | None) -> StepOutput:
        """One conditional-GRU step (module docstring): prev (B, 1), x (B, 1, E) | None, hidden (L, B, H)."""
        query, first = self._read(prev, x, hidden[:1], gru_step)  # s'_t (B, 1, H), (1, B, H)
        ctx, attn = self.attention(query, memory)  # (B, 1, M), (B, 1, S)
        out, hidden = self.context_rnn(ctx.to(query.dtype), torch.cat([first, hidden[1:]]))  # s_t from s'_t
        return out, ctx, attn, hidden


def _gru(input_size: int, hidden_size: int, num_layers: int, bias: bool, dropout: float, layer_norm: bool) -> GRU:
    """A decoder GRU; nn.GRU's dropout acts between stacked layers, so a one-layer GRU gets none."""
    return GRU(input_size, hidden_size, num_layers, bias=bias, dropout=dropout if num_layers > 1 else 0.0,
               layer_norm=layer_norm)
