"""The whole model: Encoder -> Bridge -> Decoder, pure PyTorch (no Lightning needed to run it)."""
import torch
from torch import nn

from seq2seq.config import ConfigError, ModelConfig
from seq2seq.model.attention import Memory
from seq2seq.model.bridge import Bridge
from seq2seq.model.decoder import Decoder
from seq2seq.model.encoder import Encoder


class EncoderDecoder(nn.Module):
    """Bidirectional-GRU encoder, bridge, GRU or conditional-GRU decoder with optional attention.

    The nn.GRU knobs of `config` (input_size = embedding size, hidden_size, num_layers, dropout, bias,
    bidirectional) configure the encoder; the decoder shares them except where its own keys are set.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, pad_id: int, config: ModelConfig) -> None:
        super().__init__()
        c = config
        if c.tie_embeddings and src_vocab != tgt_vocab:
            raise ConfigError(f"model.tie_embeddings=true needs one joint vocabulary, got {src_vocab} "
                             f"source and {tgt_vocab} target pieces (set data.tokenizer.joint=true)")
        self.config, self.pad_id = c, pad_id
        self.encoder = Encoder(src_vocab, c.input_size, c.hidden_size, c.num_layers, c.dropout, c.bias,
                               c.bidirectional, pad_id, c.layer_norm, c.context_p, c.word_dropout)
        self.bridge = Bridge(c.num_layers, c.directions, c.hidden_size, c.decoder_layers, c.decoder_hidden)
        self.decoder = Decoder(tgt_vocab, c.input_size, c.decoder_hidden, c.decoder_layers, c.dropout, c.bias,
                               pad_id, self.encoder.output_size, c.attention,
                               readout_size=c.input_size if c.tie_output else c.decoder_hidden, layer_norm=c.layer_norm,
                               conditional=c.decoder == "cgru", output_dropout=c.output_p)
        if c.tie_embeddings:
            self.decoder.embed.weight = self.encoder.embed.weight
        if c.tie_output:
            self.decoder.output.weight = self.decoder.embed.weight

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> tuple[Memory, torch.Tensor]:
        """src (B, S), src_lens (B,) -> memory over (B, S, D*H), decoder h_0 (L_dec, B, H_dec)."""
        values, h_n = self.encoder(src, src_lens)
        mask = torch.arange(src.size(1), device=src.device) < src_lens.to(src.device).unsqueeze(1)
        return self.decoder.memory(values, mask), self.bridge(h_n)

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor, tgt_in: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: src (B, S), src_lens (B,), tgt_in (B, T) -> logits (B, T, V), or (N, V) at the
        `positions` (B, T) bool (training's non-pad targets: padding costs no output product)."""
        memory, hidden = self.encode(src, src_lens)
        logits, _, _ = self.decoder(tgt_in, hidden, memory, positions=positions)
        return logits
