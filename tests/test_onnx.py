"""ONNX export (scripts/export.py format=onnx) and the torch-free runtime (seq2seq/inference/onnx_runtime.py):
the masked encoder equals packed nn.GRU, the exported folder translates as the PyTorch model does (greedy, beam,
n-best, prefixes) in a process that never imports torch, through translate.py and the service with backend=onnx;
what does not export says so in one line."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import MULTI30K, ROOT, one_line_error, run_script, script_env, tiny_model_file
from seq2seq import modelfile
from seq2seq.config import ConfigError, DecodingConfig, ExportConfig
from seq2seq.data.sources import read_lines
from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.inference import onnx_runtime, search
from seq2seq.inference.ensemble import Ensemble, State
from seq2seq.inference.onnx_export import exportable
from seq2seq.inference.onnx_runtime import OnnxTranslator
from seq2seq.inference.translator import Translator, padded
from seq2seq.model import EncoderDecoder, Memory
from seq2seq.model.decoder import Decoder
from seq2seq.model.gru import GRU, read_padded

MODELS = {"luong": ("model.attention=luong",), "none": ("model.attention=none", "model.decoder_hidden_size=24"),
          "bahdanau": ("model.attention=bahdanau", "model.num_layers=2", "model.bidirectional=false"),
          "cgru": ("model=gru_cgru", "model.num_layers=2")}  # every decoder: model.decoder gru (3 wirings), cgru


@pytest.mark.parametrize("layers, bidirectional, bias", [(1, True, True), (2, True, False), (2, False, True)])
def test_the_masked_fused_encoder_gives_packed_nn_gru_states(layers: int, bidirectional: bool, bias: bool) -> None:
    """GRU.masked(fused=True), the form the encoder graph is traced in: packed nn.GRU's output (zero at padding)
    and h_n at each row's own ends, rows of length 1 and of the full length included."""
    torch.manual_seed(0)
    rnn = GRU(6, 5, layers, bias=bias, bidirectional=bidirectional).eval()
    x, lengths = torch.randn(4, 9, 6), torch.tensor([9, 1, 4, 7])
    with torch.no_grad():
        packed, fused = read_padded(rnn, x, lengths), rnn.masked(x, None, lengths, fused=True)
    assert fused[0].shape == packed[0].shape and fused[1].shape == packed[1].shape
    torch.testing.assert_close(fused[0], packed[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(fused[1], packed[1], atol=1e-6, rtol=0)
    assert fused[0][1, 1:].abs().sum() == 0  # padding


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Per decoder: (model file, export folder), written by scripts/export.py."""
    out = {}
    for name, overrides in MODELS.items():
        folder = tmp_path_factory.mktemp(f"onnx_{name}")
        model = tiny_model_file(folder / "model.pt", overrides=overrides)
        assert run_script("export", f"model_file={model}", "format=onnx", f"out={folder / 'exported'}",
                          f"check_input={MULTI30K / 'val.en.gz'}", "check_lines=16") == 0
        out[name] = (model, folder / "exported")
    return out


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return read_lines(MULTI30K / "test_2016_flickr.en.gz")[:40] + [""]


@pytest.mark.parametrize("name", list(MODELS))
def test_the_folder_holds_graphs_tokenizer_config_and_its_check(exported, name: str) -> None:
    model, folder = exported[name]
    assert {p.name for p in folder.iterdir()} == {"encoder.onnx", "decoder_step.onnx", "spm.src.model", "config.json"}
    config = json.loads((folder / "config.json").read_text())
    stored = modelfile.read_contents(model)
    assert config["model"] == stored["model"] and config["decoding"] == {**vars(DecodingConfig()), **stored["decoding"]}
    check = config["check"]
    assert check["lines"] == 16 and max(check["max_abs_diff"].values()) <= check["tolerance"]
    assert ("attention" in check["max_abs_diff"]) == (name != "none")


class TorchSteps:
    """OnnxModel's encode and step computed by the PyTorch model (Ensemble.step): the numpy search over them must
    give search.py's results exactly, float differences of the graphs left out."""

    def __init__(self, model: EncoderDecoder) -> None:
        self.ensemble = Ensemble([model]).eval()

    @torch.inference_mode()
    def encode(self, src: np.ndarray, src_lens: np.ndarray) -> tuple[dict, np.ndarray]:
        (memory, h0), = self.ensemble.encode(torch.from_numpy(src), torch.from_numpy(src_lens)).per_model
        parts = {"memory": memory.values, "keys": memory.keys, "mask": memory.mask}
        return {k: v.numpy() for k, v in parts.items() if v is not None}, h0.numpy()

    @torch.inference_mode()
    def step(self, prev, hidden, memory, rows=None) -> tuple[np.ndarray, np.ndarray]:
        parts = {k: torch.from_numpy(v) for k, v in memory.items()}
        state = State([(Memory(parts["memory"], parts.get("keys"), parts["mask"]), torch.from_numpy(hidden))])
        logp, state, _ = self.ensemble.step(torch.from_numpy(prev)[:, None], state,
                                            None if rows is None else torch.from_numpy(rows))
        logp[:, [PAD, BOS]] = float("-inf")
        return logp.numpy(), state.per_model[0][1].numpy()


@pytest.mark.parametrize("attention", list(MODELS))
@pytest.mark.parametrize("beam, alpha, n_best, max_len", [(1, 1.0, 1, 200), (4, 1.0, 3, 200), (3, 0.6, 3, 7), (5, 0.0, 5, 4)])
def test_the_numpy_search_is_search_py_exactly(exported, lines, attention, beam, alpha, n_best, max_len) -> None:
    """The tokens of every hypothesis kept equal, their scores to float32 rounding (numpy's and torch's x ** alpha
    may differ in the last bit where alpha is not 1): limits (max_len and 1.5 x source + 10), length penalty, n-best
    order, forced prefixes (some longer than the limit), sentences leaving the batch."""
    model, _ = exported[attention]
    translator = Translator.load(str(model))
    ids = translator.tokenizer.encode_src(lines[:24])
    src, src_lens = padded(ids), torch.tensor([len(row) for row in ids])
    prefix = padded([translator.tokenizer.encode_tgt(["Ein Hund läuft durch den Schnee"])[0][: i % 9] or [PAD]
                     for i in range(len(ids))])
    limits = search.output_limits(src_lens, max_len)
    for forced in (None, prefix):
        found = search.decode(translator.model, src, src_lens, DecodingConfig(beam, alpha, max_len, n_best),
                              bos=BOS, eos=EOS, prefix=forced)
        steps, args = TorchSteps(translator.model.members[0]), (src.numpy(), src_lens.numpy(), limits.numpy())
        p = None if forced is None else forced.numpy()
        tokens, scores = onnx_runtime.greedy(steps, *args, alpha, p) if beam == 1 else \
            onnx_runtime.beam_search(steps, *args, beam, alpha, n_best, p)
        kept = np.isfinite(scores)  # -inf: a hypothesis the search could not complete, dropped by both translators
        assert np.array_equal(kept, np.isfinite(found.scores.numpy()))
        assert np.array_equal(tokens[kept], found.tokens.numpy()[kept])
        np.testing.assert_allclose(scores[kept], found.scores.numpy()[kept], rtol=1e-6, atol=0)


@pytest.mark.parametrize("vocab, k", [(8000, 5), (8000, 1), (7919, 4), (25, 5), (6, 3)])
def test_topk_is_torch_topk_over_a_vocabulary(vocab: int, k: int) -> None:
    """The blocked top-k (8,000 = 64 blocks of 125; a prime size has no blocks) against torch.topk: log-softmax rows
    whose best pieces crowd into one block, rows with -inf entries (a masked vocabulary), uniform noise."""
    torch.manual_seed(0)
    logits = torch.randn(40, vocab)
    logits[:10, : min(vocab, 9)] += 12  # the k best all in the first block
    logits[10:20, torch.randperm(vocab)[: vocab // 2]] = -float("inf")
    logp = torch.log_softmax(logits, 1)
    values, index = onnx_runtime.topk(logp.numpy(), k)
    expected = logp.topk(k, dim=1)
    assert np.array_equal(index, expected.indices.numpy()) and np.array_equal(values, expected.values.numpy())


@pytest.mark.parametrize("attention", list(MODELS))
@pytest.mark.parametrize("search_settings", [{"beam_size": 1}, {"beam_size": 4, "n_best": 3}])
def test_the_runtime_gives_pytorch_translations_and_scores(exported, lines, attention: str, search_settings: dict) -> None:
    """Through the graphs: the same hypotheses up to near-ties of these untrained models' flat distributions
    (a beam may keep a different one of two candidates 1e-6 apart), each kept hypothesis's score within 1e-4."""
    model, folder = exported[attention]
    prefixes = [None, "Ein Hund", "", "Zwei"] * 10 + [None]
    for forced in (None, prefixes):
        ours = OnnxTranslator.load(folder, **search_settings).translate_n_best(lines, forced)
        theirs = Translator.load(str(model), **search_settings).translate_n_best(lines, forced)
        pairs = [(a, b) for x, y in zip(ours, theirs) for a, b in zip(x, y)]
        assert [len(x) for x in ours] == [len(y) for y in theirs]
        assert sum(a.text == b.text for a, b in pairs) >= 0.9 * len(pairs)
        assert all(abs(a.score - b.score) <= 1e-4 for a, b in pairs if a.text == b.text)
        assert max(len(h) for h in ours) == search_settings.get("n_best", 1)


def test_the_runtime_never_imports_torch(exported, lines) -> None:
    """A fresh interpreter imports the runtime, translates greedily and with a beam's 2-best lists, and torch never
    entered sys.modules (nor tqdm, which the runtime needs only for progress bars)."""
    model, folder = exported["luong"]
    code = ("import json, sys; from seq2seq.inference.onnx_runtime import OnnxTranslator\n"
            f"lines = {lines[:12]!r}\n"
            f"greedy = OnnxTranslator.load({str(folder)!r}, beam_size=1).translate(lines)\n"
            f"beam = OnnxTranslator.load({str(folder)!r}, beam_size=3, n_best=2).translate_n_best(lines, ['Ein'] * 12)\n"
            "print(json.dumps({'torch': sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tqdm')),"
            " 'greedy': greedy,"
            " 'beam': [[h.text for h in hyps] for hyps in beam]}))")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=script_env(), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout)
    assert found["torch"] == []
    assert found["greedy"] == Translator.load(str(model), beam_size=1).translate(lines[:12])
    expected = Translator.load(str(model), beam_size=3, n_best=2).translate_n_best(lines[:12], ["Ein"] * 12)
    assert found["beam"] == [[h.text for h in hyps] for hyps in expected]


def test_translate_py_with_backend_onnx_writes_pytorchs_output(exported, lines, tmp_path, capfd) -> None:
    model, folder = exported["bahdanau"]
    source = tmp_path / "in.en"
    source.write_text("\n".join(lines) + "\n")
    for backend, path in (("onnx", folder), ("torch", model)):
        assert run_script("translate", f"backend={backend}", f"model_file={path}", f"input={source}",
                          f"output={tmp_path / backend}", "n_best=2") == 0
    assert (tmp_path / "onnx").read_text() == (tmp_path / "torch").read_text()
    assert len((tmp_path / "onnx").read_text().splitlines()) == 2 * (len(lines) - 1) + 1  # a blank line: one record


@pytest.mark.parametrize("setting, named", [
    ("model_file={model}", "export it first"),                     # a model file, not the folder
    ("model_file={tmp}", "not an ONNX export folder"),             # a folder without the graphs
    ("model_file=[{folder},{folder}]", "ensemble"),
    ("quantize=int8", "quantize=int8"),
    ("sampling=top_k", "sampling=top_k"),
    ("alignments=true", "alignments"),
])
def test_what_backend_onnx_does_not_do_is_one_error_line(exported, tmp_path, capfd, setting: str, named: str) -> None:
    model, folder = exported["luong"]
    source = tmp_path / "in.en"
    source.write_text("A dog runs.\n")
    args = [f"input={source}", "backend=onnx", setting.format(model=model, folder=folder, tmp=tmp_path)]
    if "model_file" not in setting:
        args.append(f"model_file={folder}")
    assert run_script("translate", *args) == 2
    one_line_error(capfd, named)


def test_an_export_folder_without_backend_onnx_is_one_error_line(exported, tmp_path, capfd) -> None:
    source = tmp_path / "in.en"
    source.write_text("A dog runs.\n")
    assert run_script("translate", f"model_file={exported['luong'][1]}", f"input={source}") == 2
    one_line_error(capfd, "backend=onnx")


def test_a_layer_normalised_gru_does_not_export_one_error_line(tmp_path, capfd) -> None:
    model = tiny_model_file(tmp_path / "model.pt", overrides=("model.layer_norm=true",))
    assert run_script("export", f"model_file={model}", f"out={tmp_path / 'out'}") == 2
    one_line_error(capfd, "model.layer_norm=true")
    assert not (tmp_path / "out").exists()


def test_a_decoder_the_export_does_not_know_is_named(model_file) -> None:
    model, _, _ = modelfile.load_model(model_file)

    class UnknownDecoder(Decoder):
        pass

    model.decoder.__class__ = UnknownDecoder
    with pytest.raises(ConfigError, match="UnknownDecoder decoder"):  # a decoder class the export does not know
        exportable(model, str(model_file))
    assert isinstance(model, EncoderDecoder)


def test_graphs_beyond_the_tolerance_leave_no_folder(model_file, tmp_path, capfd) -> None:
    """The check compares: a tolerance no float graph meets fails the export, and `out` is not written."""
    assert run_script("export", f"model_file={model_file}", f"out={tmp_path / 'out'}", "tolerance=1e-12") == 2
    one_line_error(capfd, "tolerance=1e-12", "no folder written")
    assert not (tmp_path / "out").exists()
    assert ExportConfig(model_file="m.pt", out="o").tolerance == 1e-4


@pytest.mark.slow
def test_the_service_translates_with_backend_onnx(exported, lines, tmp_path) -> None:
    from benchmarks.loadtest import call, running_server

    model, folder = exported["luong"]
    with running_server(["backend=onnx", f"model_file={folder}", "threads=1"], tmp_path / "serve.log", threads=1) as url:
        status, answer = call(f"{url}/translate", {"text": lines[:6], "beam_size": 3, "n_best": 2})
        info = call(f"{url}/info")[1]
    expected = Translator.load(str(model), beam_size=3, n_best=2).translate_n_best(lines[:6])
    assert status == 200 and answer["translations"] == [hyps[0].text for hyps in expected]
    assert info["model"]["backend"] == "onnx"
