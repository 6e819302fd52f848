"""Shapes and invariants of the model's modules, checked against nn.GRU semantics."""
import re

import pytest
import torch

from conftest import WIRINGS, random_source, wiring
from seq2seq.config import ModelConfig
from seq2seq.model import EncoderDecoder
from seq2seq.model.bridge import Bridge
from seq2seq.model.encoder import Encoder

PAD, V_SRC, V_TGT = 0, 23, 19
LENS = [5, 2, 7]  # the batch's sentences, longest not first: packing must not depend on order


def source(lens: list[int], vocab: int = V_SRC, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return random_source(lens, vocab, seed, PAD)


def encoder(num_layers: int, bidirectional: bool, hidden: int = 6) -> Encoder:
    torch.manual_seed(0)
    return Encoder(V_SRC, 5, hidden, num_layers, 0.0, True, bidirectional, PAD).eval()


@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_encoder_shapes_follow_nn_gru(num_layers: int, bidirectional: bool) -> None:
    d, h = (2 if bidirectional else 1), 6
    enc = encoder(num_layers, bidirectional, h)
    src, lens = source(LENS)
    out, h_n = enc(src, lens)
    assert out.shape == (3, max(LENS), d * h) and enc.output_size == d * h
    assert h_n.shape == (d * num_layers, 3, h)
    for i, n in enumerate(LENS):
        assert torch.all(out[i, n:] == 0), "padding positions of the output are zero"


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_encoder_is_invariant_to_padding(num_layers: int, bidirectional: bool) -> None:
    enc = encoder(num_layers, bidirectional)
    src, lens = source(LENS)
    out, h_n = enc(src, lens)
    for i, n in enumerate(LENS):
        alone_out, alone_h = enc(src[i : i + 1, :n], lens[i : i + 1])
        torch.testing.assert_close(h_n[:, i], alone_h[:, 0])
        torch.testing.assert_close(out[i, :n], alone_out[0])


@pytest.mark.parametrize("num_layers", [1, 2])
def test_final_states_are_the_outputs_at_the_sentence_ends(num_layers: int) -> None:
    """Top layer: forward h_n = output at the last real token, backward h_n = output at position 0."""
    h = 6
    enc = encoder(num_layers, True, h)
    src, lens = source(LENS)
    out, h_n = enc(src, lens)
    for i, n in enumerate(LENS):
        torch.testing.assert_close(h_n[-2, i], out[i, n - 1, :h])
        torch.testing.assert_close(h_n[-1, i], out[i, 0, h:])


@pytest.mark.parametrize("enc_layers, directions, dec_layers, dec_hidden", [(2, 2, 3, 10), (3, 1, 1, 4), (1, 2, 2, 7)])
def test_bridge_maps_any_layer_count_and_size(enc_layers: int, directions: int, dec_layers: int,
                                              dec_hidden: int) -> None:
    bridge = Bridge(enc_layers, directions, 6, dec_layers, dec_hidden)
    h_0 = bridge(torch.randn(directions * enc_layers, 4, 6))
    assert h_0.shape == (dec_layers, 4, dec_hidden)
    assert h_0.is_contiguous() and h_0.abs().max() < 1  # tanh


def test_bridge_keeps_sentences_apart() -> None:
    """Changing one sentence's encoder state changes only that sentence's decoder state."""
    bridge = Bridge(2, 2, 6, 3, 5)
    h_n = torch.randn(4, 3, 6)
    changed = h_n.clone()
    changed[:, 1] += 1
    a, b = bridge(h_n), bridge(changed)
    torch.testing.assert_close(a[:, [0, 2]], b[:, [0, 2]])
    assert not torch.allclose(a[:, 1], b[:, 1])


def model(attention: str, **kwargs) -> EncoderDecoder:
    """A small model of one of WIRINGS ("luong", "cgru:bahdanau", ...)."""
    torch.manual_seed(0)
    options = {"input_size": 8, "hidden_size": 6, "dropout": 0.0, "tie_embeddings": False, **kwargs}
    return EncoderDecoder(V_SRC, V_TGT, PAD, ModelConfig(**wiring(attention), **options)).eval()


@pytest.mark.parametrize("attention", WIRINGS)
@pytest.mark.parametrize("layers, dec_layers, dec_hidden, bidirectional",
                         [(1, None, None, True), (2, 3, 10, True), (3, 1, 4, False)])
def test_decoder_shapes(attention: str, layers: int, dec_layers: int | None, dec_hidden: int | None,
                        bidirectional: bool) -> None:
    m = model(attention, num_layers=layers, decoder_num_layers=dec_layers, decoder_hidden_size=dec_hidden,
              bidirectional=bidirectional)
    src, lens = source(LENS)
    memory, h_0 = m.encode(src, lens)
    d = 2 if bidirectional else 1
    expected_hidden = (dec_layers or layers, 3, dec_hidden or d * 6)
    assert memory.values.shape == (3, max(LENS), d * 6) and h_0.shape == expected_hidden
    tgt_in = torch.randint(1, V_TGT, (3, 4))
    logits, hidden, attn = m.decoder(tgt_in, h_0, memory)
    assert logits.shape == (3, 4, V_TGT) and hidden.shape == expected_hidden
    if attention == "none":
        assert attn is None
    else:
        assert attn.shape == (3, 4, max(LENS))
    torch.testing.assert_close(m(src, lens, tgt_in), logits)


@pytest.mark.parametrize("attention", [w for w in WIRINGS if w != "none"])
def test_attention_is_a_distribution_over_real_tokens(attention: str) -> None:
    m = model(attention)
    src, lens = source(LENS)
    memory, h_0 = m.encode(src, lens)
    _, _, attn = m.decoder(torch.randint(1, V_TGT, (3, 5)), h_0, memory)  # (B, T, S)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 5))
    for i, n in enumerate(LENS):
        assert torch.all(attn[i, :, n:] == 0) and torch.all(attn[i, :, :n] > 0)


@pytest.mark.parametrize("attention", WIRINGS)
def test_decoding_step_by_step_equals_teacher_forcing(attention: str) -> None:
    """Search feeds one token at a time with the returned state; it must see what training sees."""
    m = model(attention, num_layers=2)
    src, lens = source(LENS)
    memory, h_0 = m.encode(src, lens)
    tgt_in = torch.randint(1, V_TGT, (3, 4))
    whole, _, _ = m.decoder(tgt_in, h_0, memory)
    hidden, steps = h_0, []
    for t in range(4):
        logits, hidden, _ = m.decoder(tgt_in[:, t : t + 1], hidden, memory)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), whole)


@pytest.mark.parametrize("attention", [w for w in WIRINGS if w != "none"])
def test_a_beams_rows_share_their_sentences_memory_row(attention: str) -> None:
    """K decoder rows per sentence over one memory row each decode as over K copies of that row."""
    m, k = model(attention, num_layers=2), 3
    src, lens = source(LENS)
    memory, h_0 = m.encode(src, lens)
    rows = torch.arange(len(LENS)).repeat_interleave(k)
    prev = torch.randint(1, V_TGT, (len(LENS) * k, 1))
    hidden = h_0.repeat_interleave(k, 1) + torch.randn(h_0.size(0), len(LENS) * k, h_0.size(2))  # (L, B*K, H)
    shared = m.decoder(prev, hidden, memory)  # memory (B, S, M), queries (B*K, 1, H)
    copied = m.decoder(prev, hidden, memory.select(rows))  # memory (B*K, S, M)
    for a, b in zip(shared, copied):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("attention", WIRINGS)
def test_the_logits_of_some_rows_are_those_rows_of_all_logits(attention: str) -> None:
    m = model(attention)
    src, lens = source(LENS)
    memory, h_0 = m.encode(src, lens)
    prev, rows = torch.randint(1, V_TGT, (3, 1)), torch.tensor([2, 0])
    everything, hidden, attn = m.decoder(prev, h_0, memory)
    some, hidden_too, attn_too = m.decoder(prev, h_0, memory, rows)
    assert some.shape == (2, 1, V_TGT) and torch.equal(some, everything[rows])
    assert torch.equal(hidden, hidden_too)  # the state of every row moves on


@pytest.mark.parametrize("layers, bias", [(1, True), (2, True), (2, False)])
@pytest.mark.parametrize("attention", ["luong", "cgru:bahdanau"])
def test_search_steps_the_gru_as_nn_gru_does(attention: str, layers: int, bias: bool) -> None:
    """Without gradients on CPU search looks the first-layer input gates up in a table (inference/cpu_step.py):
    the same logits and state as nn.GRU's step, also after the weights have changed (training goes on).
    The cGRU's GRU_1 reads only the previous piece too: the table steps it, GRU_2 runs as it is."""
    from seq2seq.inference.ensemble import Ensemble

    m = model(attention, num_layers=layers, bias=bias)
    src, lens = source(LENS)
    prev, calls = torch.randint(1, V_TGT, (3, 1)), []
    m.decoder.rnn.register_forward_hook(lambda *args: calls.append(1))
    for _ in range(2):
        memory, h_0 = m.encode(src, lens)
        logits, hidden, attn = m.decoder(prev, h_0, memory)  # with gradients: nn.GRU
        with torch.no_grad():
            ensemble = Ensemble([m])  # a new ensemble (a new validation batch) keeps the decoder's table
            logp, state, attn_too = ensemble.step(prev, ensemble.encode(src, lens))
            torch.testing.assert_close(logp, torch.log_softmax(logits[:, -1], -1))
            torch.testing.assert_close(state.per_model[0][1], hidden)
            torch.testing.assert_close(attn_too, attn)
            m.decoder.embed.weight.add_(0.5)  # an optimizer step
            m.decoder.rnn.weight_ih_l0.mul_(1.5)
    assert len(calls) == 2  # only the reference steps called nn.GRU


@pytest.mark.parametrize("key, value", [("dropout", 1.5), ("hidden_size", 0), ("num_layers", -1),
                                        ("attention", "foo"), ("decoder_num_layers", -2), ("bidirectional", "yes"),
                                        ("decoder", "lstm"), ("context_dropout", 1.0), ("output_dropout", -0.1),
                                        ("word_dropout", 1.0)])
def test_invalid_values_fail_at_construction_naming_the_key(key: str, value) -> None:
    with pytest.raises(ValueError, match=rf"model\.{key}\b.*{re.escape(repr(value))}"):
        ModelConfig(**{key: value})


def test_a_conditional_gru_needs_attention() -> None:
    with pytest.raises(ValueError, match=r"model\.decoder=cgru .*model\.attention.*got none"):
        ModelConfig(decoder="cgru", attention="none")


def _cell(rnn: torch.nn.GRU, layer: int) -> torch.nn.GRUCell:
    """Layer `layer` of a GRU as a plain nn.GRUCell with its weights."""
    cell = torch.nn.GRUCell(getattr(rnn, f"weight_ih_l{layer}").size(1), rnn.hidden_size)
    cell.load_state_dict({name: getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    return cell


@pytest.mark.parametrize("attention", ["cgru:luong", "cgru:bahdanau"])
def test_the_conditional_gru_follows_its_equations(attention: str) -> None:
    """s'_t = GRU_1(E y_(t-1), s_(t-1)); c_t = attention(s'_t); s_t = GRU_2(c_t, s'_t), its layer 1 stacked
    above; logits from tanh(W [s^1_t; c_t]) — here with nn.GRUCells on the decoder's weights, step by step."""
    m = model(attention, num_layers=2)
    d, (src, lens) = m.decoder, source(LENS)
    memory, h_0 = m.encode(src, lens)
    tgt_in = torch.randint(1, V_TGT, (3, 4))
    logits, hidden, attn = d(tgt_in, h_0, memory)
    first, second, above = _cell(d.rnn, 0), _cell(d.context_rnn, 0), _cell(d.context_rnn, 1)
    s, expected_logits, expected_attn = list(h_0), [], []
    for t in range(4):
        query = first(d.embed(tgt_in[:, t]), s[0])  # s'_t (B, H)
        ctx, weights = d.attention(query.unsqueeze(1), memory)
        s[0] = second(ctx[:, 0], query)
        s[1] = above(s[0], s[1])
        expected_logits.append(d.output(torch.tanh(d.readout(torch.cat([s[1], ctx[:, 0]], -1)))))
        expected_attn.append(weights[:, 0])
    torch.testing.assert_close(logits, torch.stack(expected_logits, 1))
    torch.testing.assert_close(attn, torch.stack(expected_attn, 1))
    torch.testing.assert_close(hidden, torch.stack(s))


class DecoderLogits(torch.nn.Module):
    """A decoder as a function of memory values (B, S, M) and h_0 (L, B, H): the logits of one target batch."""

    def __init__(self, decoder: torch.nn.Module, tgt_in: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.decoder, self.tgt_in, self.mask = decoder, tgt_in, mask

    def forward(self, values: torch.Tensor, h_0: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.tgt_in, h_0, self.decoder.memory(values, self.mask))[0]


@pytest.mark.parametrize("attention, layer_norm", [("cgru:bahdanau", False), ("cgru:bahdanau", True),
                                                   ("cgru:luong", True)])
def test_conditional_gru_gradients_match_finite_differences(attention: str, layer_norm: bool) -> None:
    """torch.autograd.gradcheck in float64 of the decoder's logits with respect to every decoder parameter,
    the memory and h_0, on a tiny two-layer instance (layer_norm: gru.py's own, layer-normalised path)."""
    from torch.func import functional_call

    torch.manual_seed(0)
    m = EncoderDecoder(7, 7, PAD, ModelConfig(**wiring(attention), input_size=3, hidden_size=2, decoder_num_layers=2,
                                              dropout=0.0, tie_embeddings=False, tie_output=False,
                                              layer_norm=layer_norm)).double().eval()
    f = DecoderLogits(m.decoder, torch.tensor([[1, 4, 6], [2, 5, 3]]), torch.tensor([[True, True, True], [True, True, False]]))
    names = [name for name, _ in f.named_parameters()]

    def logits(values: torch.Tensor, h_0: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return functional_call(f, dict(zip(names, params)), (values, h_0))

    inputs = (torch.randn(2, 3, 4, dtype=torch.float64), torch.randn(2, 2, 4, dtype=torch.float64).tanh(),
              *(p.detach().clone() for p in f.parameters()))
    for x in inputs:
        x.requires_grad_(True)
    assert len(names) >= 14 + 8 * layer_norm and "decoder.context_rnn.weight_ih_l1" in names
    assert torch.autograd.gradcheck(logits, inputs, eps=1e-6, atol=1e-6, fast_mode=True)


@pytest.mark.parametrize("attention", WIRINGS)
@pytest.mark.parametrize("layer_norm", [False, True])
def test_training_under_bf16_autocast_follows_fp32(attention: str, layer_norm: bool) -> None:
    """CPU training as bf16-mixed runs it (forward under autocast: gru.py's own recurrence in every GRU;
    backward after it): the loss within 2% of fp32's, the gradient pointing the same way (cosine > 0.99)."""
    m = model(attention, num_layers=2, layer_norm=layer_norm).train()
    src, lens = source(LENS)
    tgt = torch.randint(1, V_TGT, (3, 6))

    def loss_and_gradient(dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
        m.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
            logits = m(src, lens, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), tgt[:, 1:].flatten())
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in m.parameters()])

    loss, gradient = loss_and_gradient(None)
    loss_bf16, gradient_bf16 = loss_and_gradient(torch.bfloat16)
    assert abs(loss_bf16 - loss) < 0.02 * loss
    assert torch.cosine_similarity(gradient, gradient_bf16, 0) > 0.99 and not torch.equal(gradient, gradient_bf16)


def test_tied_embeddings_need_one_vocabulary() -> None:
    with pytest.raises(ValueError, match="tie_embeddings"):
        EncoderDecoder(V_SRC, V_TGT, PAD, ModelConfig(tie_embeddings=True))
    m = EncoderDecoder(V_SRC, V_SRC, PAD, ModelConfig(input_size=8, hidden_size=6, tie_embeddings=True, tie_output=True))
    assert m.encoder.embed.weight is m.decoder.embed.weight is m.decoder.output.weight


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("steps", [6, 40])  # 24 positions: one chunk of the loss; 160: three, the last partial
def test_smoothed_loss_matches_cross_entropy_value_and_gradient(dtype: torch.dtype, steps: int) -> None:
    from seq2seq.training.loss import smoothed_loss
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(4, steps, V_TGT, generator=g)).to(dtype).requires_grad_()
    target = torch.randint(1, V_TGT, (4, steps), generator=g)
    target[1, 3:] = target[3, 1:] = PAD
    loss, nll, tokens = smoothed_loss(logits, target, 0.2)
    loss.backward()
    ref_logits = logits.detach().float().requires_grad_()
    ref = torch.nn.functional.cross_entropy(ref_logits.view(-1, V_TGT), target.view(-1), ignore_index=PAD,
                                            label_smoothing=0.2, reduction="sum")
    ref.backward()
    ref_nll = torch.nn.functional.cross_entropy(ref_logits.detach().view(-1, V_TGT), target.view(-1),
                                                ignore_index=PAD, reduction="sum")
    assert tokens == int((target != PAD).sum()) == 4 * steps - (steps - 3) - (steps - 1)
    assert torch.allclose(loss, ref, rtol=1e-5) and torch.allclose(nll, ref_nll, rtol=1e-5)
    assert not nll.requires_grad
    assert logits.grad.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 4e-3  # bf16 gradients carry 8 bits of mantissa
    assert torch.allclose(logits.grad.float(), ref_logits.grad, atol=tol)
    assert logits.grad[1, 3:].abs().max() == 0  # pad positions get no gradient


def test_dropout_keeps_the_expectation_and_drops_a_fraction_p() -> None:
    from seq2seq.model.dropout import FastDropout
    torch.manual_seed(0)
    drop, x = FastDropout(0.3), torch.ones(1000, 1000, requires_grad=True)
    y = drop(x)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.002
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.7))
    assert abs(y.mean().item() - 1) < 0.005
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient passes where the unit was kept, scaled alike
    assert torch.equal(drop.eval()(x), x)


def test_word_dropout_zeroes_whole_source_positions() -> None:
    from seq2seq.model.dropout import WordDropout
    torch.manual_seed(0)
    drop, x = WordDropout(0.25), torch.ones(200, 100, 16)
    y = drop(x)
    dropped = (y == 0).all(-1)  # (B, S): a position is zeroed across its whole vector, or kept whole
    assert torch.equal(dropped | torch.isclose(y, torch.tensor(1 / 0.75)).all(-1), torch.ones_like(dropped))
    assert abs(dropped.float().mean().item() - 0.25) < 0.01
    assert torch.equal(drop.eval()(x), x)


def test_dropout_placement_acts_where_its_key_says() -> None:
    """context_dropout drops the encoder's outputs (the attention memory), output_dropout the readout before the
    output projection; each falls back to model.dropout when null, and neither touches the other's place."""
    src, lens = torch.randint(4, V_SRC, (6, 9)), torch.full((6,), 9)
    tgt = torch.randint(4, V_TGT, (6, 7))
    def run(**keys):  # (encoder outputs, logits) of one training-mode forward
        m = model("luong", **keys).train()
        values, _ = m.encoder(src, lens)
        return values, m(src, lens, tgt)
    still_values, still_logits = run()  # model.dropout=0 and both null: nothing is dropped
    assert torch.equal(still_values, run()[0]) and torch.equal(still_logits, run()[1])
    values, logits = run(context_dropout=0.5)
    assert 0.4 < (values == 0).float().mean().item() < 0.6 and not torch.equal(logits, still_logits)
    values, logits = run(output_dropout=0.5)
    assert torch.equal(values, still_values) and not torch.equal(logits, still_logits)
    values, _ = run(dropout=0.5, output_dropout=0.0)  # context_dropout null: model.dropout's 0.5
    assert 0.4 < (values == 0).float().mean().item() < 0.6
    m = model("luong", context_dropout=0.5, output_dropout=0.5, word_dropout=0.5).eval()
    torch.testing.assert_close(m(src, lens, tgt), model("luong").eval()(src, lens, tgt))  # evaluation drops nothing


@pytest.mark.parametrize("attention", ["luong", "cgru:bahdanau"])
def test_search_under_bf16_steps_through_the_float32_table_too(attention: str) -> None:
    """bf16 search uses the same float32 input-gate table (cpu_step.py; the cGRU's GRU_1 too): its step stays as
    close to the fp32 step as nn.GRU's own bf16 autocast step is, and the table is not recomputed in bfloat16."""
    from seq2seq.inference.cpu_step import table_step
    from seq2seq.inference.ensemble import Ensemble

    m = model(attention).eval()
    src, lens = source(LENS)
    prev = torch.randint(1, V_TGT, (3, 1))
    with torch.no_grad():
        ensemble = Ensemble([m])
        exact, _, _ = ensemble.step(prev, ensemble.encode(src, lens))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert table_step(m.decoder).applies(prev)
            ours, _, _ = ensemble.step(prev, ensemble.encode(src, lens))
            memory, h_0 = m.encode(src, lens)
            logits, _, _ = m.decoder(prev, h_0, memory)  # nn.GRU's step under autocast
        assert table_step(m.decoder)._input_gates().dtype == torch.float32
    theirs = torch.log_softmax(logits[:, -1].float(), -1)
    assert (ours.float() - exact).abs().max() <= 2 * (theirs - exact).abs().max() + 1e-3
