"""The model file: weights, model config, decoding defaults and SentencePiece models in one file.

It is a plain dict saved with torch.save and loaded with ``weights_only=True``, so loading never
runs code from the file. A Lightning checkpoint of ours (``*.ckpt``) loads the same way. Model files
and checkpoints (seq2seq.training.callbacks.AtomicCheckpointIO) are written atomically
(seq2seq.atomic_files): a process killed while saving leaves the previous file intact, never a
truncated one.
"""
import logging
import pickle
import zipfile
from pathlib import Path

import torch

from seq2seq.atomic_files import atomic_save
from seq2seq.config import DecodingConfig, ModelConfig, from_dict
from seq2seq.data.tokenizer import PAD, Tokenizer
from seq2seq.model import EncoderDecoder

FORMAT = "seq2seq-gru/1"
log = logging.getLogger(__name__)


class ModelFileError(ValueError):
    """The file is missing, damaged, unsafe or not a seq2seq model."""


def save(path: Path, model_cfg: dict, state_dict: dict, tokenizer: dict, decoding: dict) -> None:
    """Write atomically: a killed save never leaves a half-written model file."""
    atomic_save({"format": FORMAT, "model": model_cfg, "state_dict": state_dict,
                 "tokenizer": tokenizer, "decoding": decoding}, path)


def read_contents(path: str | Path) -> dict:
    """The file's contents as plain data {model, state_dict, tokenizer, decoding}, checked."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: a folder, not a model file (a folder written by scripts/export.py format=onnx "
                             f"translates with backend=onnx)")
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a model file (not a PyTorch archive, or truncated)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        why = next((line for line in str(e).splitlines() if "GLOBAL" in line), "unsupported content")
        raise ModelFileError(f"{path}: refused: it holds code or objects, not just tensors and plain data "
                             f"({why.strip()})") from None
    except Exception as e:  # a damaged archive: torch raises RuntimeError, zipfile errors, EOFError ...
        raise ModelFileError(f"{path}: damaged model file ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(blob, dict):
        raise ModelFileError(f"{path}: not a seq2seq model file")
    if blob.get("format") == FORMAT:
        return blob
    if "tokenizer" in blob and "hyper_parameters" in blob:  # a Lightning checkpoint of ours
        hp = blob["hyper_parameters"]
        state = {k.removeprefix("model."): v for k, v in blob["state_dict"].items()}
        return {"model": hp["model"], "state_dict": state, "tokenizer": blob["tokenizer"],
                "decoding": hp.get("decoding") or {}}
    raise ModelFileError(f"{path}: not a seq2seq model file (no weights, config and tokenizer)")


def load_model(path: str | Path) -> tuple[EncoderDecoder, Tokenizer, DecodingConfig]:
    """Model (eval mode, CPU), tokenizer and the decoding defaults stored with it."""
    blob = read_contents(path)
    tokenizer = Tokenizer.from_state(blob["tokenizer"])
    model = EncoderDecoder(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, PAD,
                           from_dict(ModelConfig, blob["model"], f"{path}: model"))
    load_weights(model, tokenizer, blob["state_dict"], path)
    decoding = from_dict(DecodingConfig, dict(blob.get("decoding") or {}), f"{path}: decoding")
    return model.eval(), tokenizer, decoding


def load_weights(model: EncoderDecoder, tokenizer: Tokenizer, state_dict: dict, path: str | Path) -> None:
    """Load `path`'s weights into `model`, built from that file's config and tokenizer; ModelFileError naming
    the mismatched tensors when they do not fit."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    if expected != found:
        diff = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        raise ModelFileError(f"{path}: weights do not fit the model built from its config and tokenizer "
                             f"(vocabulary {tokenizer.src_vocab_size}/{tokenizer.tgt_vocab_size}); "
                             f"mismatched: {', '.join(diff[:4])}")
    model.load_state_dict(state_dict)


def set_decoding(path: Path, **changes) -> None:
    """Rewrite the model file's decoding defaults with `changes` (e.g. alpha=0.8)."""
    blob = read_contents(path)
    save(path, blob["model"], blob["state_dict"], blob["tokenizer"], {**blob["decoding"], **changes})


def write_average(checkpoints: list[Path], path: Path) -> None:
    """The model file from one checkpoint, or from the average of several checkpoints' weights."""
    blobs = [read_contents(c) for c in checkpoints]
    state = {k: sum(b["state_dict"][k].float() for b in blobs) / len(blobs) for k in blobs[0]["state_dict"]}
    first = blobs[0]
    save(path, first["model"], state, first["tokenizer"], first["decoding"])
    log.info("model file %s (average of %d checkpoints: %s)", path, len(blobs), ", ".join(c.name for c in checkpoints))
