"""int8 inference numerics: per-channel weights, 8-bit activations where the CPU sums int8 products in 32 bits."""
import io

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as qd

from conftest import WIRINGS, random_source, wiring
from seq2seq.config import ModelConfig
from seq2seq.inference import numerics
from seq2seq.model import EncoderDecoder


def quantized_error(module: nn.Module, x: torch.Tensor, full_range: bool) -> float:
    """Mean absolute difference between the int8 copy's output and the fp32 module's."""
    q = numerics.quantize_int8(nn.Sequential(module), full_range=full_range)
    out, ref = q(x), module(x)
    out, ref = (out[0], ref[0]) if isinstance(module, nn.GRU) else (out, ref)
    return (out - ref).abs().mean().item()


def test_weights_have_one_scale_per_output_row() -> None:
    q = numerics.quantize_int8(nn.Sequential(nn.Linear(8, 16), nn.GRU(8, 8, bidirectional=True)))
    assert q[0].weight().qscheme() == torch.per_channel_affine
    w_ih = q[1]._all_weight_values[0].param.__getstate__()[0][4][0].__getstate__()[0][0]
    assert w_ih.qscheme() == torch.per_channel_affine and w_ih.q_per_channel_scales().numel() == 24


def test_int8_weights_take_about_a_quarter_of_the_bytes() -> None:
    """An output projection's size (8,000 x 256): int8 values plus one scale and zero point per row.
    (A tiny test model's layers are smaller in fp32: per-row scales outweigh what int8 saves.)"""
    def size(module: nn.Module) -> int:
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        return buffer.getbuffer().nbytes

    linear = nn.Sequential(nn.Linear(256, 8000))
    assert size(numerics.quantize_int8(linear)) < 0.3 * size(linear)


@pytest.mark.skipif(not numerics._sums_int8_in_32_bits(), reason="8-bit activations need VNNI/AMX (x86)")
@pytest.mark.parametrize("module", [nn.Linear(256, 1000), nn.GRU(64, 128, batch_first=True, bidirectional=True)],
                         ids=["linear", "gru"])
def test_8_bit_activations_are_closer_to_fp32_than_7_bit(module: nn.Module) -> None:
    torch.manual_seed(0)
    x = torch.randn(32, 5, 64) if isinstance(module, nn.GRU) else torch.randn(32, 256) * 3
    full, reduced = quantized_error(module, x, True), quantized_error(module, x, False)
    assert full < 0.7 * reduced, (full, reduced)


def test_full_range_only_where_int8_products_are_summed_in_32_bits(monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.quantized, "engine", "x86")
    assert numerics._sums_int8_in_32_bits(vnni=True) and not numerics._sums_int8_in_32_bits(vnni=False)
    for vnni in (True, False):  # by default the cores' own feature, as torch reports it
        monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda vnni=vnni: vnni)
        assert numerics._sums_int8_in_32_bits() is vnni
    monkeypatch.setattr(torch.backends.quantized, "engine", "qnnpack")  # ARM: no reduce_range to lift
    assert not numerics._sums_int8_in_32_bits(vnni=True)


@pytest.mark.parametrize("attention", WIRINGS)
def test_int8_converts_every_product_of_every_decoder(attention: str) -> None:
    """Every GRU (the cGRU's two included) and every Linear of a model becomes torch.ao's int8 module, none
    stays fp32; the int8 model's teacher-forced logits and its step-by-step ones stay within 5% of fp32's."""
    from seq2seq.model.gru import GRU

    torch.manual_seed(0)
    m = EncoderDecoder(40, 40, 0, ModelConfig(**wiring(attention), input_size=16, hidden_size=16, num_layers=2,
                                              dropout=0.0)).eval()
    q = numerics.quantize_int8(m)
    assert not any(isinstance(module, (nn.GRU, GRU, nn.Linear)) for module in q.modules())
    assert sum(isinstance(module, qd.GRU) for module in q.modules()) == (3 if attention.startswith("cgru") else 2)
    src, lens = random_source([5, 3, 7], 40)
    tgt_in = torch.randint(1, 40, (3, 6))
    with torch.no_grad():
        reference, forced = m(src, lens, tgt_in), q(src, lens, tgt_in)
        memory, hidden = q.encode(src, lens)
        steps = []
        for t in range(tgt_in.size(1)):
            logits, hidden, _ = q.decoder(tgt_in[:, t : t + 1], hidden, memory)
            steps.append(logits)
    for logits in (forced, torch.cat(steps, 1)):
        assert 0 < (logits - reference).abs().mean() < 0.05 * reference.abs().mean()
