"""seq2seq: GRU encoder-decoder translation on PyTorch Lightning, configured with Hydra."""
from seq2seq import precision  # registers the ${cpu_precision:} resolver the configs use
from seq2seq.translator import Translator

__all__ = ["Translator"]
