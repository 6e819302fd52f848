"""Data: readers, SentencePiece, batching and the DataModule (imported on first use: it needs Lightning)."""
from seq2seq.data.sources import DataError
from seq2seq.data.tokenizer import Tokenizer

__all__ = ["DataError", "Tokenizer", "TranslationDataModule"]


def __getattr__(name: str):
    if name == "TranslationDataModule":  # translate/evaluate start faster without Lightning
        from seq2seq.data.datamodule import TranslationDataModule

        return TranslationDataModule
    raise AttributeError(name)
