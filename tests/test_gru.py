"""The GRU layer of our own (seq2seq/model/gru.py) against nn.GRU: parameters, outputs, gradients, paths."""
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.config import ConfigError
from seq2seq.inference import numerics
from seq2seq.model.gru import GRU, Recurrence, as_nn_gru, read_padded, reverse_within

LENGTHS = torch.tensor([7, 3, 5, 1, 7, 2])


def pair(layers: int = 2, bidirectional: bool = True, dtype: torch.dtype = torch.float32, **kwargs) -> tuple[nn.GRU, GRU]:
    torch.manual_seed(0)
    ref = nn.GRU(16, 8, layers, batch_first=True, bidirectional=bidirectional, **kwargs).to(dtype)
    ours = GRU(16, 8, layers, bidirectional=bidirectional, **kwargs).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def packed_reference(ref: nn.GRU, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out, h_n = ref(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0], h_n


def test_parameters_are_nn_grus_and_state_dicts_load_either_way() -> None:
    ref, ours = pair()
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    assert list(ours.state_dict())[:4] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]
    back = nn.GRU(16, 8, 2, batch_first=True, bidirectional=True)
    back.load_state_dict(ours.state_dict())  # strict: the same keys both ways
    ln = GRU(16, 8, 2, bidirectional=True, layer_norm=True)
    names = [n for n, _ in ln.named_parameters()]
    assert names[: len(list(ref.parameters()))] == [n for n, _ in ref.named_parameters()]  # Adam resumes by index
    assert names[len(list(ref.parameters())):][:2] == ["ln_gain_ih_l0", "ln_bias_ih_l0"]


def test_reverse_within_flips_each_row_inside_its_length_only() -> None:
    x = torch.arange(4).repeat(2, 1).t().unsqueeze(-1)  # (T=4, B=2, 1): 0 1 2 3 in each column
    out = reverse_within(x, torch.tensor([4, 2])).squeeze(-1).t()
    assert out.tolist() == [[3, 2, 1, 0], [1, 0, 2, 3]]


@pytest.mark.parametrize("layers,bidirectional", [(1, True), (2, True), (2, False)])
def test_masked_formulation_equals_packed_nn_gru_forward_and_gradients(layers: int, bidirectional: bool) -> None:
    """fp32, within 1e-5: the outputs (zero at padding), h_n at each row's own ends, and every gradient."""
    ref, ours = pair(layers, bidirectional)
    x = torch.randn(6, 7, 16, requires_grad=True)
    out_ref, h_ref = packed_reference(ref, x, LENGTHS)
    out, h_n = ours.masked(x, None, LENGTHS)
    assert torch.allclose(out, out_ref, atol=1e-5) and torch.allclose(h_n, h_ref, atol=1e-5)
    assert out[1, 3:].abs().max() == 0  # padding
    g_out, g_h = torch.randn_like(out), torch.randn_like(h_n)
    grads_ref = torch.autograd.grad((out_ref * g_out).sum() + (h_ref * g_h).sum(), [x, *ref.parameters()])
    grads = torch.autograd.grad((out * g_out).sum() + (h_n * g_h).sum(), [x, *ours.parameters()])
    for a, b in zip(grads_ref, grads):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_decoder_use_from_a_given_state_equals_nn_gru() -> None:
    """No lengths, h_0 given (the decoder's teacher forcing): outputs, h_n and gradients, fp32 within 1e-5."""
    ref, ours = pair(2, bidirectional=False)
    x, h0 = torch.randn(6, 5, 16, requires_grad=True), torch.randn(2, 6, 8, requires_grad=True)
    (out_ref, h_ref), (out, h_n) = ref(x, h0), ours.masked(x, h0)
    assert torch.allclose(out, out_ref, atol=1e-5) and torch.allclose(h_n, h_ref, atol=1e-5)
    grads_ref = torch.autograd.grad(out_ref.square().sum(), [x, h0, *ref.parameters()])
    grads = torch.autograd.grad(out.square().sum(), [x, h0, *ours.parameters()])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads_ref, grads))


def test_recurrence_and_layer_norm_pass_gradcheck() -> None:
    torch.manual_seed(0)
    gi = torch.randn(4, 3, 12, dtype=torch.float64, requires_grad=True)  # (T, B, 3H), H = 4
    h0 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w, b = torch.randn(12, 4, dtype=torch.float64, requires_grad=True), torch.randn(12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(Recurrence.apply, (gi, h0, w, b))
    ln = GRU(5, 4, 1, bidirectional=True, layer_norm=True).double()
    with torch.no_grad():
        for name, p in ln.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))  # gains and biases away from 1 and 0
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: read_padded(ln, x, torch.tensor([4, 2, 3]))[0], (x,))


def test_which_path_runs() -> None:
    """Ours under CPU autocast training and for layer_norm; nn.GRU's kernels in fp32 training and inference."""
    _, ours = pair()
    x = torch.randn(2, 3, 16)
    assert not ours.uses_own_path(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ours.uses_own_path(x)
        with torch.no_grad():
            assert not ours.uses_own_path(x)
    assert GRU(16, 8, layer_norm=True).uses_own_path(x)


def test_bf16_training_path_stays_close_to_nn_gru_under_autocast() -> None:
    """Under bf16 autocast ours keeps float32 states and gate arithmetic: as close to fp32 as nn.GRU's."""
    ref, ours = pair()
    x = torch.randn(6, 7, 16)
    exact, _ = packed_reference(ref, x, LENGTHS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        theirs, _ = packed_reference(ref, x, LENGTHS)
        out, _ = read_padded(ours, x, LENGTHS)
    assert out.dtype == torch.float32
    assert (out - exact).abs().max() <= 2 * (theirs.float() - exact).abs().max() + 1e-3


def test_inference_runs_nn_grus_own_kernel_bit_for_bit() -> None:
    ref, ours = pair()
    x = torch.randn(6, 7, 16)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(read_padded(ours, x, LENGTHS), packed_reference(ref, x, LENGTHS)))


def test_layer_norm_changes_the_layer_and_int8_refuses_it_in_one_line() -> None:
    _, plain = pair(1)
    ln = GRU(16, 8, 1, bidirectional=True, layer_norm=True)
    ln.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(6, 7, 16)
    with torch.no_grad():
        assert not torch.allclose(read_padded(ln, x, LENGTHS)[0], read_padded(plain, x, LENGTHS)[0], atol=1e-3)
    with pytest.raises(ConfigError, match=r"^quantize=int8 covers nn.GRU's products only") as error:
        numerics.quantize_int8(nn.Sequential(ln))
    assert "\n" not in str(error.value)
    assert type(as_nn_gru(plain)) is nn.GRU
