from seq2seq.data.datamodule import TranslationDataModule
from seq2seq.data.sources import DataError
from seq2seq.data.tokenizer import Tokenizer

__all__ = ["DataError", "Tokenizer", "TranslationDataModule"]
