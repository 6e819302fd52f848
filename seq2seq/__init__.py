"""seq2seq: GRU encoder-decoder translation on PyTorch Lightning, configured with Hydra.

Sub-packages, in the order a request travels: ``data`` (readers, SentencePiece, batching), ``model``
(encoder, bridge, decoder, attention), ``inference`` (search, the Translator, the HTTP service; never
imports Lightning), ``training`` (the LightningModule and everything around ``Trainer.fit``).
"""
from seq2seq import compat
from seq2seq.inference.translator import Translator

compat.install()

__all__ = ["Translator"]
