"""A model file as a folder that translates without torch (onnx_runtime.py reads it): scripts/export.py format=onnx.

Two graphs, the search staying in our code (the route ONNX Runtime's own beam-search operator leaves to
recurrent models): the encoder (embedding, bidirectional GRU, attention keys, bridge) and one decoder step
with its state and the attention memory as inputs. Packed sequences have no ONNX form, so the encoder graph
is gru.py's masked formulation (``GRU.masked``, the backward direction over each row's tokens reversed within
its length), each layer and direction one ONNX GRU op (``fused=True``); tests/test_onnx.py checks it against
packed nn.GRU. Graphs are traced by torch's TorchScript exporter: the dynamo exporter (onnxscript 0.7.2)
writes the GRU output's reshape with the example's sequence length, wrong for every other length.

Before the folder replaces ``out``, ``check`` runs both graphs beside the PyTorch model on real sentences:
every state, key, attention weight and log-probability within ``tolerance``, or no folder.
"""
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from seq2seq import modelfile
from seq2seq.config import ConfigError, ExportConfig
from seq2seq.data.sources import read_lines
from seq2seq.data.tokenizer import BOS, Tokenizer
from seq2seq.inference.ensemble import Ensemble
from seq2seq.inference.lines import LineTranslator
from seq2seq.inference.onnx_runtime import CONFIG, ENCODER, FOLDER_FORMAT, STEP, OnnxModel, OnnxTranslator
from seq2seq.inference.translator import Translator, padded
from seq2seq.model import EncoderDecoder, Memory
from seq2seq.model.decoder import Decoder

log = logging.getLogger(__name__)
DECODERS = {"gru": ("luong", "bahdanau", "none"), "cgru": ("luong", "bahdanau")}  # model.decoder: its model.attention
CHECK_LINES = ["A man in an orange hat starring at something.", "A Boston Terrier is running on lush green grass.",
               "A girl in karate uniform breaking a stick with a front kick.", "Five people in winter jackets and "
               "helmets stand in the snow, with snowmobiles in the background.", "People are fixing the roof of a house.",
               "A group of people standing in front of an igloo.", "A boy in a red uniform is attempting to avoid "
               "getting out at home plate.", "Two dogs play in the water."]


class EncoderGraph(nn.Module):
    """src (B, S), src_lens (B,) -> memory (B, S, M), [keys (B, S, Hq)], h0 (L_dec, B, H_dec): EncoderDecoder.encode
    with the encoder GRU masked (gru.py) instead of packed."""

    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m = self.model
        values, h_n = m.encoder.rnn.masked(m.encoder.embed(src), None, src_lens, fused=True)
        h0 = m.bridge(h_n)
        return (values, h0) if m.decoder.attention is None else (values, m.decoder.attention.keys(values), h0)


class StepGraph(nn.Module):
    """prev (N,), hidden (L, N, H), rows (A,), [memory (B, S, M), keys (B, S, Hq), mask (B, S)] -> logp (A, V),
    hidden_out (L, N, H), [attention (N, S)]: Ensemble.step of one model."""

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, prev: torch.Tensor, hidden: torch.Tensor, rows: torch.Tensor, *memory: torch.Tensor):
        logits, hidden, attn = self.decoder(prev.unsqueeze(1), hidden, Memory(*memory) if memory else None, rows)
        logp = torch.log_softmax(logits[:, -1].float(), dim=-1)
        return (logp, hidden) if attn is None else (logp, hidden, attn[:, 0])


def exportable(model: EncoderDecoder, where: str) -> None:
    """One error naming what has no ONNX form here: a decoder other than ours, a layer-normalised GRU."""
    c = model.config
    if type(model.decoder) is not Decoder or c.attention not in DECODERS.get(c.decoder, ()):
        known = "; ".join(f"model.decoder={d} with model.attention={'|'.join(a)}" for d, a in DECODERS.items())
        raise ConfigError(f"{where}: the {type(model.decoder).__name__} decoder (model.decoder={c.decoder}, "
                          f"model.attention={c.attention}) does not export to ONNX; the export knows {known}")
    if c.layer_norm:
        raise ConfigError(f"{where}: model.layer_norm=true does not export to ONNX: ONNX's GRU op has no normalised "
                          f"gates, and a step loop over the source has no fixed-length graph; export a model with "
                          f"model.layer_norm=false or translate this one with backend=torch")


def export(cfg: ExportConfig) -> None:
    """scripts/export.py: write the folder beside `out`, check it, then move it into place; print the check."""
    model, tokenizer, decoding = modelfile.load_model(cfg.model_file)
    exportable(model, cfg.model_file)
    out = Path(cfg.out)
    lines = read_lines(Path(cfg.check_input))[: cfg.check_lines] if cfg.check_input else CHECK_LINES[: cfg.check_lines]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        folder = Path(tmp)
        write_graphs(model, folder, cfg.opset)
        tokenizer.save(folder)
        config = {"format": FOLDER_FORMAT, "model": vars(model.config), "decoding": vars(decoding),
                  "source": str(cfg.model_file), "torch": torch.__version__, "opset": cfg.opset}
        (folder / CONFIG).write_text(json.dumps(config, indent=1))
        diffs = check(model, tokenizer, folder, lines)
        worst = max(diffs.values())
        if worst > cfg.tolerance:
            raise ConfigError(f"{cfg.model_file}: the exported graphs differ from the PyTorch model by {worst:.2e} "
                              f"(> tolerance={cfg.tolerance:g}): {json.dumps(diffs)}; no folder written")
        same = agreement(Translator(model, tokenizer, decoding), OnnxTranslator.load(folder), lines)
        config["check"] = {"lines": len(lines), "tolerance": cfg.tolerance, "max_abs_diff": diffs,
                           "identical_translations": same}
        (folder / CONFIG).write_text(json.dumps(config, indent=1))
        if out.exists():
            shutil.rmtree(out)
        folder.chmod(0o755)  # mkdtemp's 0700 would keep the service's other users out
        folder.rename(out)
        folder.mkdir()  # for TemporaryDirectory's clean-up
    print(f"exported {cfg.model_file} to {out}/: max |ONNX - PyTorch| {worst:.1e} (tolerance {cfg.tolerance:g}) "
          f"on {len(lines)} lines; identical translations (beam {decoding.beam_size}) {same}/{len(lines)}")


def write_graphs(model: EncoderDecoder, folder: Path, opset: int) -> None:
    """encoder.onnx and decoder_step.onnx (onnx_runtime.py's docstring names their inputs and outputs)."""
    attends = model.decoder.attention is not None
    src, src_lens = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]]), torch.tensor([5, 3])
    with torch.no_grad():
        memory, h0 = model.encode(src, src_lens)
    k = 2  # two beam rows per sentence: the step's rows and memory rows differ, as in beam search
    hidden = h0.repeat_interleave(k, dim=1)
    step_inputs = (torch.tensor([BOS, 7, BOS, 9]), hidden, torch.tensor([0, 1, 3]))
    step_inputs += (memory.values, memory.keys, memory.mask) if attends else ()
    mem_names, mem_axes = (["memory", "keys", "mask"], {"memory": {0: "B", 1: "S"}, "keys": {0: "B", 1: "S"},
                                                        "mask": {0: "B", 1: "S"}}) if attends else ([], {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and GRU batch-size notes
        torch.onnx.export(EncoderGraph(model), (src, src_lens), str(folder / ENCODER), dynamo=False, opset_version=opset,
                          input_names=["src", "src_lens"], output_names=["memory", *(["keys"] if attends else []), "h0"],
                          dynamic_axes={"src": {0: "B", 1: "S"}, "src_lens": {0: "B"}, "h0": {1: "B"},
                                        "memory": {0: "B", 1: "S"}, "keys": {0: "B", 1: "S"}})
        torch.onnx.export(StepGraph(model.decoder), step_inputs, str(folder / STEP), dynamo=False, opset_version=opset,
                          input_names=["prev", "hidden", "rows", *mem_names],
                          output_names=["logp", "hidden_out"] + (["attention"] if attends else []),
                          dynamic_axes={"prev": {0: "N"}, "hidden": {1: "N"}, "rows": {0: "A"}, "logp": {0: "A"},
                                        "hidden_out": {1: "N"}, "attention": {0: "N", 1: "S"}, **mem_axes})


def check(model: EncoderDecoder, tokenizer: Tokenizer, folder: Path, lines: list[str], k: int = 3,
          steps: int = 12) -> dict[str, float]:
    """Largest |ONNX - PyTorch| of the encoder's outputs (packed nn.GRU on the PyTorch side) and of `steps` decoder
    steps of K rows per sentence, each side from its own states, fed the PyTorch side's best K words."""
    onnx_model, torch_model = OnnxModel(folder), Ensemble([model]).eval()
    ids = tokenizer.encode_src(lines)
    src, src_lens = padded(ids), torch.tensor([len(row) for row in ids])
    with torch.inference_mode():
        state = torch_model.encode(src, src_lens)
        (memory, h0), = state.per_model
        names = [o.name for o in onnx_model.encoder.get_outputs()]
        outputs = dict(zip(names, onnx_model.encoder.run(None, {"src": src.numpy(), "src_lens": src_lens.numpy()})))
        diffs = {"h0": diff(h0, outputs["h0"]), "memory": diff(memory.values, outputs["memory"])}
        if "keys" in outputs:
            diffs["keys"] = diff(memory.keys, outputs["keys"])
        o_memory, o_hidden = onnx_model.encode(src.numpy(), src_lens.numpy())
        state, o_hidden = state.expand(k), o_hidden.repeat(k, axis=1)
        prev = torch.full((src.size(0) * k, 1), BOS)
        for _ in range(steps):
            logp, state, attn = torch_model.step(prev, state)
            o_logp, o_hidden, o_attn = onnx_model.decoder.run(None, {"prev": prev[:, 0].numpy(), "hidden": o_hidden,
                                                                    "rows": torch.arange(len(prev)).numpy(), **o_memory}) \
                + ([None] if attn is None else [])
            diffs["logp"] = max(diffs.get("logp", 0.0), diff(logp, o_logp))
            diffs["hidden"] = max(diffs.get("hidden", 0.0), diff(state.per_model[0][1], o_hidden))
            if attn is not None:
                diffs["attention"] = max(diffs.get("attention", 0.0), diff(attn[:, 0], o_attn))
            prev = logp.topk(k, dim=1).indices.view(-1, k, k)[:, 0].reshape(-1, 1)  # sentence's first row's K best
    return diffs


def diff(a: torch.Tensor, b) -> float:
    """max |a - b| over the finite entries (log_softmax keeps -inf where both have it)."""
    a, b = a.float(), torch.as_tensor(b).float()
    finite = torch.isfinite(a) & torch.isfinite(b)
    if not torch.equal(torch.isfinite(a), torch.isfinite(b)):
        return float("inf")
    return float((a - b)[finite].abs().max()) if finite.any() else 0.0


def agreement(reference: LineTranslator, exported: LineTranslator, lines: list[str]) -> int:
    """How many lines the two translate identically (the model's decoding settings)."""
    return sum(a == b for a, b in zip(reference.translate(lines), exported.translate(lines)))
