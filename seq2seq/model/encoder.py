"""The encoder: token embeddings read by a (bidirectional) GRU with ``nn.GRU``'s semantics (model/gru.py).

``nn.GRU`` semantics, as used here (batch_first):
  input  (B, S, E)           E = input_size (the embedding size)
  output (B, S, D*H)         D = 2 if bidirectional else 1; forward and backward states concatenated
  h_n    (D*L, B, H)         L = num_layers; layer l's directions at rows 2l (forward), 2l+1 (backward)
Padding never enters a state (packed sequences, or gru.py's masked formulation when training on CPU):
``output`` at pad positions is zero and ``h_n`` holds each sentence's state at its own last token
(forward) and first token (backward).
"""
import torch
from torch import nn

from seq2seq.model.dropout import FastDropout, WordDropout
from seq2seq.model.gru import GRU, read_padded


class Encoder(nn.Module):
    def __init__(self, vocab_size: int, input_size: int, hidden_size: int, num_layers: int,
                 dropout: float, bias: bool, bidirectional: bool, pad_id: int, layer_norm: bool = False,
                 context_dropout: float = 0.0, word_dropout: float = 0.0) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, input_size, padding_idx=pad_id)
        self.word_dropout = WordDropout(word_dropout)
        self.dropout = FastDropout(dropout)
        self.context_dropout = FastDropout(context_dropout)
        # nn.GRU applies `dropout` between layers only; the embedding and top-layer dropout is ours.
        self.rnn = GRU(input_size, hidden_size, num_layers, bias=bias, dropout=dropout if num_layers > 1 else 0.0,
                       bidirectional=bidirectional, layer_norm=layer_norm)
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S), src_lens (B,) -> output (B, S, D*H), h_n (D*L, B, H)."""
        x = self.dropout(self.word_dropout(self.embed(src)))  # (B, S, E)
        out, h_n = read_padded(self.rnn, x, src_lens)
        return self.context_dropout(out), h_n  # the attention memory: model.context_dropout
