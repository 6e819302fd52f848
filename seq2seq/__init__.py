"""seq2seq: GRU encoder-decoder translation on PyTorch Lightning, configured with Hydra."""
from seq2seq import precision  # noqa: F401  (registers the ${cpu_precision:} resolver the configs use)

__all__ = ["Translator"]


def __getattr__(name: str):
    if name == "Translator":  # imported on first use: `import seq2seq.config` stays light
        from seq2seq.translator import Translator

        return Translator
    raise AttributeError(name)
