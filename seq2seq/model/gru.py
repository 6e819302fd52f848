"""The GRU layer of both encoder and decoder: ``nn.GRU`` itself, with a CPU training path of our own.

``GRU`` is an ``nn.GRU`` (a subclass): the same constructor arguments, parameters, names, shapes and
registration order (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ``..._reverse``,
then layer 1), so state dicts, model files, checkpoints and Adam's state load either way. Per layer
and direction, with r, z, n the reset, update and new gates (torch's order in the weights):

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_(t-1) + b_hr)
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_(t-1) + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_(t-1) + b_hn))
    h_t = (1 - z_t) * n_t + z_t * h_(t-1)

Shapes (batch_first): input (B, T, E), h_0 (D*L, B, H) -> output (B, T, D*H), h_n (D*L, B, H), D = 2
when bidirectional. ``read_padded`` takes each row's own length (B,): ``output`` is zero at padding and
``h_n`` holds each row's state at its own last token (forward) and first token (backward), as a
packed sequence gives.

Which computation runs:
  nn.GRU's own  inference, fp32 training and GPUs (cuDNN): packed sequences when lengths are given
  ours          CPU training under bf16 autocast, and layer_norm anywhere: masked, not packed. Every step's input
                projections are one (B*T, E) x (E, 3H) product; the recurrence (``Recurrence``) casts
                W_hh to the autocast dtype once per forward, runs the gate arithmetic in float32, and
                its backward computes dW_hh as one (3H, T*B) x (T*B, H) product instead of one per step.
The masked formulation (``reverse_within``) runs the backward direction forward over each row's tokens
reversed in place, so padding at the end never reaches a state; ONNX export uses the same formulation.

layer_norm (LIUM's and Nematus' layer-normalised GRU): each gate's pre-activations W_i* x and
W_h* h are normalised separately, with gains and biases of their own ((3H,) each, per layer and
direction, registered after nn.GRU's parameters); nn.GRU cannot do this, so such a layer always runs ours.
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.config import ConfigError


class GRU(nn.GRU):
    """``nn.GRU(input_size, hidden_size, num_layers, bias, batch_first=True, dropout, bidirectional)`` plus
    ``layer_norm``; forward(input (B, T, E), h_0 (D*L, B, H) | None) as nn.GRU's. Padded batches with
    their lengths: ``read_padded``."""

    def __init__(self, *args, layer_norm: bool = False, **kwargs) -> None:
        super().__init__(*args, batch_first=True, **kwargs)
        self.layer_norm = layer_norm
        if layer_norm:
            gates = 3 * self.hidden_size
            for name in self._suffixes():
                for part in ("ih", "hh"):
                    self.register_parameter(f"ln_gain_{part}{name}", nn.Parameter(torch.ones(gates)))
                    self.register_parameter(f"ln_bias_{part}{name}", nn.Parameter(torch.zeros(gates)))

    def _suffixes(self) -> list[str]:
        directions = ["", "_reverse"] if self.bidirectional else [""]
        return [f"_l{layer}{d}" for layer in range(self.num_layers) for d in directions]

    def uses_own_path(self, x: torch.Tensor) -> bool:
        """Ours for layer_norm, and for CPU training under autocast; nn.GRU's kernels otherwise (fp32 CPU
        training included: there they are as fast, docs/benchmarks.md)."""
        return self.layer_norm or (x.device.type == "cpu" and torch.is_grad_enabled()
                                   and torch.is_autocast_enabled("cpu"))

    def forward(self, input: torch.Tensor, hx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """nn.GRU's forward (a PackedSequence too); ours for a padded (B, T, E) input where it applies."""
        if isinstance(input, torch.Tensor) and self.uses_own_path(input):
            return self.masked(input, hx)
        return super().forward(input, hx)

    def masked(self, x: torch.Tensor, hx: torch.Tensor | None = None, lengths: torch.Tensor | None = None,
               fused: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The masked (unpacked) formulation of forward: the same outputs and states as packed nn.GRU.

        fused: each layer and direction runs nn.GRU's own op (one layer, one direction) instead of
        ``Recurrence``: the form ONNX export traces (one ONNX GRU op each, any length); not layer_norm."""
        batch, steps = x.shape[:2]
        D, H = (2 if self.bidirectional else 1), self.hidden_size
        if hx is None:
            hx = x.new_zeros(D * self.num_layers, batch, H, dtype=state_dtype(x.dtype))
        if lengths is not None:
            lengths = lengths.to(x.device)
            pad = torch.arange(steps, device=x.device) >= lengths.unsqueeze(1)  # (B, T)
            last = (lengths - 1).clamp(min=0)
        states, layer_in = [], x.transpose(0, 1)  # (T, B, E): each step's rows contiguous
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.training:
                layer_in = F.dropout(layer_in, self.dropout)
            outs = []
            for d in range(D):
                suffix = f"_l{layer}{'_reverse' if d else ''}"
                seq = layer_in
                if d and lengths is not None:
                    seq = reverse_within(seq, lengths)
                elif d:
                    seq = seq.flip(0)
                out = self._direction(seq, hx[layer * D + d], suffix, fused)  # (T, B, H)
                states.append(out[-1] if lengths is None else out[last, torch.arange(batch, device=x.device)])
                if d and lengths is not None:
                    out = reverse_within(out, lengths)
                elif d:
                    out = out.flip(0)
                outs.append(out)
            layer_in = torch.cat(outs, -1) if D == 2 else outs[0]  # (T, B, D*H)
        output = layer_in.transpose(0, 1)
        if lengths is not None:
            output = output.masked_fill(pad.unsqueeze(-1), 0.0)
        return output, torch.stack(states).to(hx.dtype)

    def _direction(self, seq: torch.Tensor, h0: torch.Tensor, suffix: str, fused: bool = False) -> torch.Tensor:
        """One layer and direction over seq (T, B, E) from h0 (B, H) -> every step's state (T, B, H)."""
        w_ih, w_hh = getattr(self, f"weight_ih{suffix}"), getattr(self, f"weight_hh{suffix}")
        b_ih, b_hh = (getattr(self, f"bias_ih{suffix}"), getattr(self, f"bias_hh{suffix}")) if self.bias else (None, None)
        if fused and not self.layer_norm:
            weights = [w for w in (w_ih, w_hh, b_ih, b_hh) if w is not None]
            return torch._VF.gru(seq, h0.unsqueeze(0), weights, self.bias, 1, 0.0, False, False, False)[0]
        gi = F.linear(seq, w_ih, b_ih)  # (T, B, 3H): every step's input projections in one product
        if not self.layer_norm:
            return Recurrence.apply(gi, h0.to(state_dtype(gi.dtype)), w_hh, b_hh)
        gi = self._normalise(gi, "ih", suffix)
        h, outs = h0.to(gi.dtype), []
        for t in range(seq.size(0)):
            h = _cell(gi[t], self._normalise(F.linear(h, w_hh, b_hh), "hh", suffix), h)
            outs.append(h)
        return torch.stack(outs)

    def _normalise(self, gates: torch.Tensor, part: str, suffix: str) -> torch.Tensor:
        """Layer norm of each gate's pre-activations: (..., 3H) normalised per H block, own gain and bias."""
        shape, H = gates.shape, self.hidden_size
        g = F.layer_norm(gates.to(state_dtype(gates.dtype)).reshape(*shape[:-1], 3, H), (H,))
        gain, bias = getattr(self, f"ln_gain_{part}{suffix}"), getattr(self, f"ln_bias_{part}{suffix}")
        return g.reshape(shape) * gain + bias


def read_padded(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Any GRU module (ours, nn.GRU, torch.ao's int8 GRU) over padded x (B, T, E) with lengths (B,), from
    zero states -> output (B, T, D*H), zero at padding, h_n (D*L, B, H) at each row's own ends."""
    if isinstance(rnn, GRU) and rnn.uses_own_path(x):
        return rnn.masked(x, None, lengths)
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, h_n = rnn(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out, h_n


def as_nn_gru(rnn: GRU) -> nn.GRU:
    """A plain nn.GRU with rnn's weights (torch.ao's int8 conversion takes nn.GRU only)."""
    if rnn.layer_norm:
        raise ConfigError("quantize=int8 covers nn.GRU's products only, not a layer-normalised GRU "
                          "(model.layer_norm=true): translate this model with quantize=none (fp32 or bf16)")
    plain = nn.GRU(rnn.input_size, rnn.hidden_size, rnn.num_layers, bias=rnn.bias, batch_first=True,
                   dropout=rnn.dropout, bidirectional=rnn.bidirectional)
    plain.load_state_dict(rnn.state_dict())
    return plain


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of states and gate arithmetic: float32 for products in bfloat16/float16 (autocast)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _cell(gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The GRU step from pre-activations gi, gh (B, 3H) and state h (B, H) -> h' (B, H)."""
    i_r, i_z, i_n = gi.chunk(3, -1)
    h_r, h_z, h_n = gh.chunk(3, -1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return torch.lerp(n, h, z)  # (1 - z) n + z h


def reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x (T, B, ...) with each column b's first lengths[b] steps reversed and its padding left in place."""
    steps = x.size(0)
    t = torch.arange(steps, device=x.device).unsqueeze(1)  # (T, 1)
    index = torch.where(t < lengths, lengths - 1 - t, t)  # (T, B)
    return x.gather(0, index.view(steps, -1, *([1] * (x.dim() - 2))).expand_as(x))


class Recurrence(torch.autograd.Function):
    """h_t = GRU step(gi_t, h_(t-1)) for t = 1..T, forward and backward written out.

    gi (T, B, 3H) input projections (their dtype, bfloat16 under autocast, is the products'), h0 (B, H)
    in state_dtype, w_hh (3H, H), b_hh (3H,) | None -> states (T, B, H) in h0's dtype. Autograd through
    a loop of cells would compute dW_hh with one small product per step and add them up, and cast at
    every op; here the per-step products are the recurrence's own (h W_hh^T forward, dgh W_hh backward),
    each written in the product dtype by the op that computes it, and the gate arithmetic is float32.
    """

    @staticmethod
    def forward(ctx, gi: torch.Tensor, h0: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None):
        dtype, state = gi.dtype, h0.dtype  # bfloat16 products under autocast; float32 states and gates
        steps, batch, H = gi.size(0), gi.size(1), h0.size(1)
        with torch.autocast("cpu", enabled=False):
            w = w_hh.to(dtype).t()  # (H, 3H), cast once per forward, not once per step
            b = b_hh.to(dtype) if b_hh is not None else gi.new_zeros(3 * H)
            gi = gi.to(state)  # one cast for all steps: CPU kernels cast mixed-dtype operands op by op
            states, gates, gh = h0.new_empty(steps, batch, H), h0.new_empty(steps, batch, 3 * H), torch.empty_like(gi)
            h = h0
            for t in range(steps):
                gh[t] = torch.addmm(b, h.to(dtype), w)  # W_h* h + b_h*, kept: n's part is what r multiplies
                g = gates[t]  # r, z, n after their nonlinearity
                torch.add(gi[t, :, : 2 * H], gh[t, :, : 2 * H], out=g[:, : 2 * H]).sigmoid_()
                r, z, n = g[:, :H], g[:, H: 2 * H], g[:, 2 * H:]
                torch.addcmul(gi[t, :, 2 * H:], r, gh[t, :, 2 * H:], out=n).tanh_()
                h = torch.lerp(n, h, z, out=states[t])  # (1 - z) n + z h
        ctx.save_for_backward(h0, w_hh, states, gates, gh)
        ctx.dtype, ctx.has_bias = dtype, b_hh is not None
        return states

    @staticmethod
    def backward(ctx, grad_states: torch.Tensor):
        h0, w_hh, states, gates, gh = ctx.saved_tensors
        dtype, (steps, batch, H) = ctx.dtype, states.shape
        w = w_hh.to(dtype)  # (3H, H)
        dgi = torch.empty_like(gates)  # d pre-activations of r, z, n
        dgh = gates.new_empty(steps, batch, 3 * H, dtype=dtype)  # d (W_h* h + b_h*), in the products' dtype
        dh = torch.zeros_like(h0)
        for t in range(steps - 1, -1, -1):
            dh = dh + grad_states[t]
            h_prev = states[t - 1] if t > 0 else h0
            g, da = gates[t], dgi[t]
            r, z, n = g[:, :H], g[:, H: 2 * H], g[:, 2 * H:]
            # n's pre-activation: dh (1 - z) (1 - n^2); z's: dh (h - n) z (1 - z); r's: dn gh_n r (1 - r)
            dn = torch.mul(dh - dh * z, 1 - n * n, out=da[:, 2 * H:])
            torch.mul(dh * (h_prev - n), z - z * z, out=da[:, H: 2 * H])
            torch.mul(dn * gh[t, :, 2 * H:], r - r * r, out=da[:, :H])
            dgh[t, :, : 2 * H] = da[:, : 2 * H]
            dgh[t, :, 2 * H:] = dn * r
            dh = torch.addcmul(torch.mm(dgh[t], w).to(dh.dtype), dh, z)  # dgh W_hh + dh z
        h_prev_all = torch.cat([h0.unsqueeze(0), states[:-1]]).to(dtype)  # (T, B, H)
        flat = dgh.reshape(-1, 3 * H)
        grad_w = torch.mm(flat.t(), h_prev_all.reshape(-1, H)).to(w_hh.dtype)  # one (3H, T*B) x (T*B, H) product
        grad_b = flat.sum(0, dtype=w_hh.dtype) if ctx.has_bias else None
        return dgi.to(dtype), dh, grad_w, grad_b
