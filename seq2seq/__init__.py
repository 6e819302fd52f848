"""seq2seq: GRU encoder-decoder translation on PyTorch Lightning, configured with Hydra.

Sub-packages, in the order a request travels: ``data`` (readers, SentencePiece, batching), ``model``
(encoder, bridge, decoder, attention), ``inference`` (search, the Translator, the HTTP service; never
imports Lightning), ``training`` (the LightningModule and everything around ``Trainer.fit``).
``Translator`` is imported when first asked for, so that ``import seq2seq.inference.onnx_runtime`` (the
torch-free runtime) does not import torch.
"""
from seq2seq import compat

compat.install()

__all__ = ["Translator"]


def __getattr__(name: str) -> object:
    if name == "Translator":
        from seq2seq.inference.translator import Translator

        return Translator
    raise AttributeError(f"module 'seq2seq' has no attribute {name!r}")
