"""Data: readers, SentencePiece and token-budget batching, shared by training and translation.

``DataError`` and ``Tokenizer`` are imported when first asked for: the torch-free ONNX runtime imports
``seq2seq.data.tokenizer`` alone, without the readers (datasets, pyarrow)."""
from seq2seq import compat

__all__ = ["DataError", "Tokenizer"]
_NAMES = {"DataError": "seq2seq.data.sources", "Tokenizer": "seq2seq.data.tokenizer"}


def __getattr__(name: str) -> object:  # old paths too, e.g. seq2seq.data.TranslationDataModule
    if name in _NAMES:
        import importlib

        return getattr(importlib.import_module(_NAMES[name]), name)
    return compat.moved_name(__name__, name)
