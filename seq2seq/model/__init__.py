from seq2seq.model.attention import Memory
from seq2seq.model.encoder_decoder import EncoderDecoder

__all__ = ["EncoderDecoder", "Memory"]
