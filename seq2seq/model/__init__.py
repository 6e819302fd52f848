from seq2seq.model.attention import Memory
from seq2seq.model.seq2seq import Seq2Seq

__all__ = ["Memory", "Seq2Seq"]
