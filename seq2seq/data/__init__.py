"""Data: readers, SentencePiece and token-budget batching, shared by training and translation."""
from seq2seq import compat
from seq2seq.data.sources import DataError
from seq2seq.data.tokenizer import Tokenizer

__all__ = ["DataError", "Tokenizer"]


def __getattr__(name: str) -> object:  # old paths, e.g. seq2seq.data.TranslationDataModule
    return compat.moved_name(__name__, name)
