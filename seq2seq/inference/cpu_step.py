"""Search's decoder GRU step on CPU (luong, no attention, the cGRU's GRU_1): the first layer's input gates
W_ih e + b_ih of every target piece are one float32 (V, 3H) table, computed once for the current weights,
so a step looks its rows up instead of multiplying (B, E) x (E, 3H); the rest is the arithmetic of ATen's
GRU cell, op for op, so in fp32 the step gives nn.GRU's outputs. Under bf16 autocast the products left
(W_hh h, and W_ih x of upper layers) run in bfloat16 and the gate arithmetic in float32.
"""
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from seq2seq.model.decoder import Decoder


def table_step(decoder: Decoder) -> "TableStep":
    """The decoder's TableStep, kept as long as the decoder lives: every search over it (each validation
    batch builds a new Ensemble) reuses its table."""
    step = _STEPS.get(decoder)
    if step is None:
        step = _STEPS[decoder] = TableStep(decoder)
    return step


class TableStep:
    """The GRU step of one decoder, its input-gate table recomputed when a weight has changed (training
    goes on between validations)."""

    def __init__(self, decoder: Decoder) -> None:
        self._decoder = weakref.ref(decoder)  # the cache below must not keep the decoder alive
        self._gates, self._gates_of = None, None  # the table and the weights it was computed from

    @property
    def decoder(self) -> Decoder:
        return self._decoder()

    def applies(self, prev: torch.Tensor) -> bool:
        """One step (prev (B, 1)) without gradients, on CPU, by an nn.GRU (not an int8 one, nor a
        layer-normalised one) that reads only the previous piece (not Bahdanau's context)."""
        d = self.decoder
        return (prev.size(1) == 1 and not torch.is_grad_enabled() and prev.device.type == "cpu"
                and isinstance(d.rnn, nn.GRU) and not getattr(d.rnn, "layer_norm", False)
                and not d.feeds_context)

    def __call__(self, prev: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """prev (B,), hidden (L, B, H) -> out (B, 1, H), hidden (L, B, H): r, z, n gates; h' = (h - n) * z + n."""
        rnn, x, states = self.decoder.rnn, None, []
        for layer, h in enumerate(hidden):
            w_ih, w_hh, b_ih, b_hh = (getattr(rnn, f"{name}_l{layer}", None)
                                      for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            gi = self._input_gates().index_select(0, prev) if layer == 0 else F.linear(x, w_ih, b_ih)  # (B, 3H)
            i_r, i_z, i_n = gi.chunk(3, 1)
            h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, 1)
            r, z = (h_r + i_r).sigmoid(), (h_z + i_z).sigmoid()
            n = (i_n + h_n * r).tanh()
            x = (h - n) * z + n  # (B, H)
            states.append(x)
        return x.unsqueeze(1), torch.stack(states)

    def _input_gates(self) -> torch.Tensor:
        """(V, 3H): W_ih e + b_ih of the first GRU layer for every target embedding e."""
        d = self.decoder
        weights = (d.embed.weight, d.rnn.weight_ih_l0, getattr(d.rnn, "bias_ih_l0", None))
        of = [(w.data_ptr(), w._version) for w in weights if w is not None]
        if of != self._gates_of:
            with torch.autocast("cpu", enabled=False):  # float32 under bf16 search too: a lookup costs no product
                self._gates, self._gates_of = F.linear(*weights), of
        return self._gates


_STEPS: "weakref.WeakKeyDictionary[Decoder, TableStep]" = weakref.WeakKeyDictionary()
