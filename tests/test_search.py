"""Greedy and beam search on small random models: consistency, limits, EOS, length penalty."""
import pytest
import torch
from test_model import source

from seq2seq.config import DecodingConfig, ModelConfig
from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.model import EncoderDecoder
from seq2seq.search import beam_search, decode_ids, greedy, length_penalty, output_limits, strip

VOCAB = 17
LENS = [6, 1, 9, 3, 4]
ATTENTIONS = ["luong", "bahdanau", "none"]
SEEDS = [0, 1, 2]


def random_model(attention: str, seed: int = 0, eos_bias: float = 1.0) -> EncoderDecoder:
    """A small untrained model. Its weights are scaled up so that its outputs depend on the source
    and it ends sentences at varied lengths (at init it would repeat one token up to every limit)."""
    torch.manual_seed(seed)
    m = EncoderDecoder(VOCAB, VOCAB, PAD, ModelConfig(input_size=8, hidden_size=8, num_layers=2, dropout=0.0,
                                                      attention=attention, tie_embeddings=False, tie_output=False)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3)
        m.decoder.output.bias[EOS] += eos_bias
    return m


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """src (B, S) with EOS-terminated sentences of lengths LENS, src_lens (B,)."""
    src, lens = source([n - 1 for n in LENS], VOCAB, seed)
    src = torch.cat([src, torch.full((len(LENS), 1), PAD)], 1)
    src[torch.arange(len(LENS)), lens] = EOS
    return src, lens + 1


def assert_well_formed(tokens: torch.Tensor, limits: torch.Tensor) -> None:
    """tokens (B, T): each row has an EOS within its first limit + 1 positions and only PAD after it."""
    for row, limit in zip(tokens.tolist(), limits.tolist()):
        assert EOS in row, row
        end = row.index(EOS)
        assert end <= limit and all(t == PAD for t in row[end + 1 :]), (row, limit)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("seed", SEEDS)
def test_beam_of_one_is_greedy(attention: str, seed: int) -> None:
    m, (src, lens) = random_model(attention, seed), batch(seed)
    limits = output_limits(lens, max_len=12)
    g, g_attn = greedy(m, src, lens, limits, bos=BOS, eos=EOS, return_attention=True)
    b, b_attn = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=1, alpha=1.0, return_attention=True)
    assert_well_formed(g, limits)
    assert torch.equal(g, b)
    if attention == "none":
        assert g_attn is None and b_attn is None
    else:
        assert g_attn.shape == (len(LENS), g.size(1), src.size(1))
        torch.testing.assert_close(g_attn, b_attn)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_random_models_end_sentences_at_varied_lengths(attention: str) -> None:
    """Guards the tests above and below: their subjects neither stop at once nor always hit the limit."""
    lengths = set()
    for seed in SEEDS:
        m, (src, lens) = random_model(attention, seed), batch(seed)
        limits = output_limits(lens, max_len=12)
        for search in (greedy(m, src, lens, limits, bos=BOS, eos=EOS),
                       beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=1.0)):
            lengths |= {(n, n == limit) for n, limit in zip(map(len, strip(search[0], EOS)), limits.tolist())}
    assert len({n for n, _ in lengths}) >= 4 and any(n > 0 and not at_limit for n, at_limit in lengths), lengths


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_batched_beam_search_equals_one_sentence_at_a_time(attention: str, seed: int, alpha: float) -> None:
    m, (src, lens) = random_model(attention, seed), batch(seed)
    limits = output_limits(lens, max_len=12)
    tokens, attn = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=alpha, return_attention=True)
    assert_well_formed(tokens, limits)
    together = strip(tokens, EOS)
    for i, n in enumerate(lens.tolist()):
        alone, alone_attn = beam_search(m, src[i : i + 1, :n], lens[i : i + 1], limits[i : i + 1], bos=BOS, eos=EOS,
                                        beam_size=4, alpha=alpha, return_attention=True)
        assert strip(alone, EOS)[0] == together[i]
        if attention != "none":
            steps = len(together[i]) + 1  # through EOS
            torch.testing.assert_close(attn[i, :steps, :n], alone_attn[0, :steps])


@pytest.mark.parametrize("beam_size", [1, 3])
def test_per_sentence_limits_are_respected(beam_size: int) -> None:
    """A model that never chooses EOS is cut at each sentence's own limit, with EOS appended."""
    m, (src, lens) = random_model("luong", eos_bias=-1e4), batch()
    limits = torch.tensor([2, 7, 0, 4, 1])
    if beam_size == 1:
        tokens, _ = greedy(m, src, lens, limits, bos=BOS, eos=EOS)
    else:
        tokens, _ = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=beam_size, alpha=1.0)
    assert_well_formed(tokens, limits)
    assert tokens.size(1) == 8
    assert [len(row) for row in strip(tokens, EOS)] == limits.tolist()


def test_output_limits() -> None:
    lens = torch.tensor([1, 4, 10, 100])
    assert output_limits(lens, max_len=30).tolist() == [11, 16, 25, 30]
    assert output_limits(lens, max_len=200, ratio=2.0, extra=0).tolist() == [2, 8, 20, 200]


def test_length_penalty_values() -> None:
    lengths = torch.tensor([1, 3, 11, 25])
    torch.testing.assert_close(length_penalty(lengths, 0.0), torch.ones(4))
    torch.testing.assert_close(length_penalty(lengths, 1.0), torch.tensor([1.0, 8 / 6, 16 / 6, 5.0]))
    torch.testing.assert_close(length_penalty(lengths, 2.0), torch.tensor([1.0, 8 / 6, 16 / 6, 5.0]) ** 2)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_alpha_acts_only_through_lengths(attention: str) -> None:
    """When every hypothesis has the same length (EOS never chosen) alpha cannot change the result."""
    m, (src, lens) = random_model(attention, eos_bias=-1e4), batch()
    limits = output_limits(lens, max_len=12)
    results = [beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=a)[0] for a in (0.0, 0.6, 3.0)]
    assert all(torch.equal(results[0], r) for r in results[1:])


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_length_penalty_ranks_finished_hypotheses(attention: str) -> None:
    """With one output token allowed and beam = vocabulary, the search is exhaustive: it must return
    argmax log p(y) / ((5 + |y|) / 6) ** alpha over y = [EOS] and every [w, EOS] (w not PAD or BOS),
    |y| counting EOS."""
    m, (src, lens) = random_model(attention), batch()
    b = len(LENS)
    memory, h_0 = m.encode(src, lens)
    with torch.no_grad():
        logits, h_1, _ = m.decoder(torch.full((b, 1), BOS), h_0, memory)
        first = torch.log_softmax(logits[:, 0], -1)  # (B, V)
        rows = torch.arange(b).repeat_interleave(VOCAB)  # every sentence x every first word
        words = torch.arange(VOCAB).repeat(b).unsqueeze(1)
        logits, _, _ = m.decoder(words, h_1.index_select(1, rows), memory.select(rows))
        then_eos = torch.log_softmax(logits[:, 0], -1)[:, EOS].view(b, VOCAB)  # (B, V)
    chosen = set()
    for alpha in (0.0, 1.0, 3.0, 10.0):
        two = (first + then_eos) / length_penalty(torch.tensor(2), alpha)
        two[:, EOS] = first[:, EOS] / length_penalty(torch.tensor(1), alpha)
        two[:, [PAD, BOS]] = float("-inf")  # search never generates these
        expected = [[] if w == EOS else [w] for w in two.argmax(1).tolist()]
        tokens, _ = beam_search(m, src, lens, torch.ones(b, dtype=torch.long), bos=BOS, eos=EOS, beam_size=VOCAB, alpha=alpha)
        assert strip(tokens, EOS) == expected, alpha
        chosen.add(str(expected))
    assert len(chosen) > 1, "alpha should change some choice here, else the test shows little"


def test_decode_ids_strips_eos_and_switches_search() -> None:
    m, (src, lens) = random_model("bahdanau"), batch()
    limits = output_limits(lens, 12)
    for beam_size in (1, 4):
        ids = decode_ids(m, src, lens, DecodingConfig(beam_size=beam_size, alpha=1.0, max_len=12), bos=BOS, eos=EOS)
        if beam_size == 1:
            tokens, _ = greedy(m, src, lens, limits, bos=BOS, eos=EOS)
        else:
            tokens, _ = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=beam_size, alpha=1.0)
        assert ids == strip(tokens, EOS) and all(EOS not in row for row in ids)
    rows = torch.tensor([[5, 6, EOS, PAD], [EOS, PAD, PAD, PAD], [7, 8, 9, 10]])
    assert strip(rows, EOS) == [[5, 6], [], [7, 8, 9, 10]]
