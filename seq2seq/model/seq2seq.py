"""The whole model: Encoder -> Bridge -> Decoder, pure PyTorch (no Lightning needed to run it)."""
import torch
from torch import nn

from seq2seq.model.attention import ATTENTION, Memory
from seq2seq.model.bridge import Bridge
from seq2seq.model.decoder import Decoder
from seq2seq.model.encoder import Encoder


class Seq2Seq(nn.Module):
    """Bidirectional-GRU encoder, bridge, GRU decoder with optional attention.

    The nn.GRU knobs (input_size = embedding size, hidden_size, num_layers, dropout, bias,
    bidirectional) configure the encoder; the decoder shares them except where its own keys are set
    (decoder_hidden_size defaults to D*hidden_size, decoder_num_layers to num_layers).
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, pad_id: int, input_size: int = 256,
                 hidden_size: int = 256, num_layers: int = 1, dropout: float = 0.3, bias: bool = True,
                 bidirectional: bool = True, decoder_hidden_size: int | None = None,
                 decoder_num_layers: int | None = None, attention: str = "luong",
                 tie_embeddings: bool = False, tie_output: bool = True) -> None:
        super().__init__()
        check_config(input_size=input_size, hidden_size=hidden_size, num_layers=num_layers, dropout=dropout,
                     bias=bias, bidirectional=bidirectional, decoder_hidden_size=decoder_hidden_size,
                     decoder_num_layers=decoder_num_layers, attention=attention, tie_embeddings=tie_embeddings,
                     tie_output=tie_output)
        directions = 2 if bidirectional else 1
        dec_hidden = decoder_hidden_size or directions * hidden_size
        dec_layers = decoder_num_layers or num_layers
        if tie_embeddings and src_vocab != tgt_vocab:
            raise ValueError(f"model.tie_embeddings=true needs one joint vocabulary, got {src_vocab} "
                             f"source and {tgt_vocab} target pieces (set data.tokenizer.joint=true)")
        self.encoder = Encoder(src_vocab, input_size, hidden_size, num_layers, dropout, bias,
                               bidirectional, pad_id)
        self.bridge = Bridge(num_layers, directions, hidden_size, dec_layers, dec_hidden)
        self.decoder = Decoder(tgt_vocab, input_size, dec_hidden, dec_layers, dropout, bias, pad_id,
                               self.encoder.output_size, attention,
                               readout_size=input_size if tie_output else dec_hidden)
        if tie_embeddings:
            self.decoder.embed.weight = self.encoder.embed.weight
        if tie_output:
            self.decoder.output.weight = self.decoder.embed.weight
        self.pad_id = pad_id

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> tuple[Memory, torch.Tensor]:
        """src (B, S), src_lens (B,) -> memory over (B, S, D*H), decoder h_0 (L_dec, B, H_dec)."""
        values, h_n = self.encoder(src, src_lens)
        mask = torch.arange(src.size(1), device=src.device) < src_lens.to(src.device).unsqueeze(1)
        return self.decoder.memory(values, mask), self.bridge(h_n)

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: src (B, S), src_lens (B,), tgt_in (B, T) -> logits (B, T, V)."""
        memory, hidden = self.encode(src, src_lens)
        logits, _, _ = self.decoder(tgt_in, hidden, memory)
        return logits


def check_config(**values) -> None:
    """Fail at start-up, naming the `model.` key, instead of deep inside nn.GRU."""
    for key in ("input_size", "hidden_size", "num_layers", "decoder_hidden_size", "decoder_num_layers"):
        value = values[key]
        if key.startswith("decoder_") and value is None:  # None: follow the encoder
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"model.{key} must be a positive integer, got {value!r}")
    dropout = values["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"model.dropout must be a number in [0, 1), got {dropout!r}")
    for key in ("bias", "bidirectional", "tie_embeddings", "tie_output"):
        if not isinstance(values[key], bool):
            raise ValueError(f"model.{key} must be true or false, got {values[key]!r}")
    choices = ["none", *ATTENTION]
    if values["attention"] not in choices:
        raise ValueError(f"model.attention must be one of {choices}, got {values['attention']!r}")
