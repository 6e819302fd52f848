"""The bridge: the encoder's final states become the decoder's initial state.

h_n (D*L_enc, B, H_enc) -> per layer, both directions concatenated (B, L_enc*D*H_enc)
-> linear -> tanh -> h_0 (L_dec, B, H_dec). One projection over all layers lets the encoder
and decoder differ in layer count and size.
"""
import torch
from torch import nn


class Bridge(nn.Module):
    def __init__(self, enc_layers: int, enc_directions: int, enc_hidden: int,
                 dec_layers: int, dec_hidden: int) -> None:
        super().__init__()
        self.dec_layers, self.dec_hidden = dec_layers, dec_hidden
        self.proj = nn.Linear(enc_layers * enc_directions * enc_hidden, dec_layers * dec_hidden)

    def forward(self, h_n: torch.Tensor) -> torch.Tensor:
        """h_n (D*L_enc, B, H_enc) -> h_0 (L_dec, B, H_dec)."""
        batch = h_n.size(1)
        flat = h_n.transpose(0, 1).reshape(batch, -1)  # (B, L_enc*D*H_enc), layer-major, fwd|bwd
        h_0 = torch.tanh(self.proj(flat)).view(batch, self.dec_layers, self.dec_hidden)
        return h_0.transpose(0, 1).contiguous()  # (L_dec, B, H_dec)
