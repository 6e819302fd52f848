"""Greedy and beam search on small random models: the same hypotheses as before finished sentences left
the batch, consistency, limits, EOS, length penalty, n-best lists and their scores, ensembles."""
import pytest
import torch

import search_reference
from conftest import WIRINGS, random_source, wiring
from seq2seq.config import ConfigError, DecodingConfig, ModelConfig
from seq2seq.data.tokenizer import BOS, EOS, PAD
from seq2seq.inference.ensemble import Ensemble
from seq2seq.inference.sampling import Sampler, Sampling
from seq2seq.inference.search import argmax, beam_search, decode_ids, greedy, length_penalty, output_limits, strip
from seq2seq.model import EncoderDecoder

VOCAB = 17
LENS = [6, 1, 9, 3, 4]
SEEDS = [0, 1, 2]


EOS_BIAS = {"cgru:luong": 2.0}  # else 1.0: where each wiring's random models end at varied lengths (guarded below)


def random_model(attention: str, seed: int = 0, eos_bias: float | None = None) -> EncoderDecoder:
    """A small untrained model of one of WIRINGS ("luong", "cgru:bahdanau", ...). Its weights are scaled up so
    that its outputs depend on the source, and its EOS bias raised so that it ends sentences at varied lengths
    (at init it would repeat one token up to every limit)."""
    torch.manual_seed(seed)
    m = EncoderDecoder(VOCAB, VOCAB, PAD, ModelConfig(input_size=8, hidden_size=8, num_layers=2, dropout=0.0,
                                                      **wiring(attention), tie_embeddings=False, tie_output=False)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3)
        m.decoder.output.bias[EOS] += EOS_BIAS.get(attention, 1.0) if eos_bias is None else eos_bias
    return m


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """src (B, S) with EOS-terminated sentences of lengths LENS, src_lens (B,)."""
    src, lens = random_source([n - 1 for n in LENS], VOCAB, seed, PAD)
    src = torch.cat([src, torch.full((len(LENS), 1), PAD)], 1)
    src[torch.arange(len(LENS)), lens] = EOS
    return src, lens + 1


def assert_well_formed(tokens: torch.Tensor, limits: torch.Tensor) -> None:
    """tokens (B, T): each row has an EOS within its first limit + 1 positions and only PAD after it."""
    for row, limit in zip(tokens.tolist(), limits.tolist()):
        assert EOS in row, row
        end = row.index(EOS)
        assert end <= limit and all(t == PAD for t in row[end + 1 :]), (row, limit)


@pytest.mark.parametrize("attention", WIRINGS)
@pytest.mark.parametrize("seed", SEEDS)
def test_beam_of_one_is_greedy(attention: str, seed: int) -> None:
    m, (src, lens) = random_model(attention, seed), batch(seed)
    limits = output_limits(lens, max_len=12)
    g, g_attn = greedy(m, src, lens, limits, bos=BOS, eos=EOS, return_attention=True).best()
    b, b_attn = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=1, alpha=1.0, return_attention=True).best()
    assert_well_formed(g, limits)
    assert torch.equal(g, b)
    if attention == "none":
        assert g_attn is None and b_attn is None
    else:
        assert g_attn.shape == (len(LENS), g.size(1), src.size(1))
        torch.testing.assert_close(g_attn, b_attn)


@pytest.mark.parametrize("attention", WIRINGS)
def test_random_models_end_sentences_at_varied_lengths(attention: str) -> None:
    """Guards the tests above and below: their subjects neither stop at once nor always hit the limit."""
    lengths = set()
    for seed in SEEDS:
        m, (src, lens) = random_model(attention, seed), batch(seed)
        limits = output_limits(lens, max_len=12)
        for search in (greedy(m, src, lens, limits, bos=BOS, eos=EOS).best(),
                       beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=1.0).best()):
            lengths |= {(n, n == limit) for n, limit in zip(map(len, strip(search[0], EOS)), limits.tolist())}
    assert len({n for n, _ in lengths}) >= 4 and any(n > 0 and not at_limit for n, at_limit in lengths), lengths


@pytest.mark.parametrize("attention", WIRINGS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_batched_beam_search_equals_one_sentence_at_a_time(attention: str, seed: int, alpha: float) -> None:
    m, (src, lens) = random_model(attention, seed), batch(seed)
    limits = output_limits(lens, max_len=12)
    tokens, attn = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=alpha, return_attention=True).best()
    assert_well_formed(tokens, limits)
    together = strip(tokens, EOS)
    for i, n in enumerate(lens.tolist()):
        alone, alone_attn = beam_search(m, src[i : i + 1, :n], lens[i : i + 1], limits[i : i + 1], bos=BOS, eos=EOS,
                                        beam_size=4, alpha=alpha, return_attention=True).best()
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
        tokens, _ = greedy(m, src, lens, limits, bos=BOS, eos=EOS).best()
    else:
        tokens, _ = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=beam_size, alpha=1.0).best()
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


@pytest.mark.parametrize("attention", WIRINGS)
def test_alpha_acts_only_through_lengths(attention: str) -> None:
    """When every hypothesis has the same length (EOS never chosen) alpha cannot change the result."""
    m, (src, lens) = random_model(attention, eos_bias=-1e4), batch()
    limits = output_limits(lens, max_len=12)
    results = [beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=a).best()[0] for a in (0.0, 0.6, 3.0)]
    assert all(torch.equal(results[0], r) for r in results[1:])


@pytest.mark.parametrize("attention", WIRINGS)
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
        tokens, _ = beam_search(m, src, lens, torch.ones(b, dtype=torch.long), bos=BOS, eos=EOS, beam_size=VOCAB,
                                alpha=alpha).best()
        assert strip(tokens, EOS) == expected, alpha
        chosen.add(str(expected))
    assert len(chosen) > 1, "alpha should change some choice here, else the test shows little"


def test_decode_ids_strips_eos_and_switches_search() -> None:
    m, (src, lens) = random_model("bahdanau"), batch()
    limits = output_limits(lens, 12)
    for beam_size in (1, 4):
        ids = decode_ids(m, src, lens, DecodingConfig(beam_size=beam_size, alpha=1.0, max_len=12), bos=BOS, eos=EOS)
        if beam_size == 1:
            tokens, _ = greedy(m, src, lens, limits, bos=BOS, eos=EOS).best()
        else:
            tokens, _ = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=beam_size, alpha=1.0).best()
        assert ids == strip(tokens, EOS) and all(EOS not in row for row in ids)
    rows = torch.tensor([[5, 6, EOS, PAD], [EOS, PAD, PAD, PAD], [7, 8, 9, 10]])
    assert strip(rows, EOS) == [[5, 6], [], [7, 8, 9, 10]]


def varied_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A larger batch (12 sentences of 1..10 tokens) so that sentences finish at many different steps."""
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, 11, (12,), generator=g)
    src = torch.full((12, int(lens.max())), PAD)
    for i, n in enumerate(lens.tolist()):
        src[i, : n - 1] = torch.randint(3, VOCAB, (n - 1,), generator=g)
        src[i, n - 1] = EOS
    return src, lens


def assert_same_search(new: tuple, old: tuple) -> None:
    """Same tokens; the same attention through each sentence's EOS (the old search kept attending after it)."""
    (tokens, attn), (ref_tokens, ref_attn) = new, old
    assert torch.equal(tokens, ref_tokens)
    assert (attn is None) == (ref_attn is None)
    if attn is not None:
        for row, (ids, a, ref_a) in enumerate(zip(tokens.tolist(), attn, ref_attn)):
            steps = ids.index(EOS) + 1
            torch.testing.assert_close(a[:steps], ref_a[:steps], msg=f"sentence {row}")


@pytest.mark.parametrize("attention", WIRINGS)
@pytest.mark.parametrize("seed", SEEDS)
def test_greedy_returns_what_the_search_that_keeps_every_sentence_returned(attention: str, seed: int) -> None:
    m, (src, lens) = random_model(attention, seed), varied_batch(seed)
    for max_len in (3, 12):
        limits = output_limits(lens, max_len)
        assert_same_search(greedy(m, src, lens, limits, bos=BOS, eos=EOS, return_attention=True).best(),
                           search_reference.greedy(m, src, lens, limits, bos=BOS, eos=EOS, return_attention=True))


@pytest.mark.parametrize("vocab", [1024, 8000, 8003, 100])
def test_chunked_argmax_is_torch_argmax(vocab: int) -> None:
    """First maximal index per row, also with ties, -inf columns, NaN and a short last chunk."""
    torch.manual_seed(vocab)
    for x in (torch.randn(300, vocab), torch.randint(0, 3, (300, vocab)).float(), torch.randn(1, vocab)):
        x[:, [0, 2]] = float("-inf")
        assert torch.equal(argmax(x), x.argmax(1))
    x = torch.randn(4, vocab)
    x[1, vocab - 1] = x[2, 5] = float("nan")
    assert torch.equal(argmax(x), x.argmax(1))


def test_greedy_over_a_large_vocabulary_returns_what_the_reference_returned() -> None:
    """V = 2,000: greedy picks words with the chunked argmax (small vocabularies take torch.argmax)."""
    torch.manual_seed(0)
    m = EncoderDecoder(2000, 2000, PAD, ModelConfig(input_size=8, hidden_size=16, num_layers=1, dropout=0.0)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3)
    src, lens = varied_batch(0)
    limits = output_limits(lens, 12)
    assert_same_search(greedy(m, src, lens, limits, bos=BOS, eos=EOS).best(),
                       search_reference.greedy(m, src, lens, limits, bos=BOS, eos=EOS))


@pytest.mark.parametrize("attention", WIRINGS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("beam_size", [2, 5])
def test_beam_search_returns_what_the_search_that_keeps_every_sentence_returned(attention: str, seed: int,
                                                                                beam_size: int) -> None:
    m, (src, lens) = random_model(attention, seed), varied_batch(seed)
    for max_len, alpha in ((3, 1.0), (12, 0.0), (12, 1.0)):
        limits = output_limits(lens, max_len)
        new = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=beam_size, alpha=alpha, return_attention=True)
        old = search_reference.beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=beam_size, alpha=alpha,
                                           return_attention=True)
        assert_same_search(new.best(), old)


@pytest.mark.parametrize("attention", WIRINGS)
def test_ended_hypotheses_get_no_output_projection(attention: str) -> None:
    """Every live row goes through the decoder's readout each step; only the rows whose hypotheses go on
    go through the output projection (most of a step's arithmetic), with the same hypotheses as before."""
    m, (src, lens) = random_model(attention, 0), varied_batch(0)
    seen = {"readout": 0, "output": 0}
    hooks = [getattr(m.decoder, name).register_forward_hook(
        lambda module, args, out, name=name: seen.__setitem__(name, seen[name] + args[0].size(0)))
        for name in seen]
    limits = output_limits(lens, 12)
    new = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=1.0)
    for hook in hooks:
        hook.remove()
    assert 0 < seen["output"] < seen["readout"], seen
    old = search_reference.beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=1.0)
    assert torch.equal(new.best()[0], old[0])


def test_sentences_finish_at_many_steps_in_the_reference_batches() -> None:
    """Guards the two tests above: their batches do shrink during the search, many times."""
    ends = set()
    for attention in WIRINGS:
        for seed in SEEDS:
            m, (src, lens) = random_model(attention, seed), varied_batch(seed)
            tokens, _ = greedy(m, src, lens, output_limits(lens, 12), bos=BOS, eos=EOS).best()
            ends |= {len(row) for row in strip(tokens, EOS)}
    assert len(ends) >= 6, ends


def teacher_forced_score(m: EncoderDecoder, src: torch.Tensor, lens: torch.Tensor, ids: list[int], alpha: float) -> float:
    """log p(ids + [EOS] | src) / length penalty, computed by one teacher-forced forward pass."""
    target = torch.tensor([ids + [EOS]])
    with torch.no_grad():
        logp = torch.log_softmax(m(src, lens, torch.tensor([[BOS] + ids])).float(), -1)[0]  # (T, V)
    return float(logp.gather(1, target.T).sum() / length_penalty(torch.tensor(len(ids) + 1), alpha))


@pytest.mark.parametrize("attention", WIRINGS)
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_n_best_lists(attention: str, alpha: float) -> None:
    """The first of n_best hypotheses is the beam's output; scores are non-increasing, distinct hypotheses,
    each the length-normalised log-probability of its tokens (recomputed by teacher forcing)."""
    m, (src, lens) = random_model(attention, 1), varied_batch(1)
    limits = output_limits(lens, 12)
    best, _ = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=5, alpha=alpha).best()
    nbest = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=5, alpha=alpha, n_best=4)
    assert nbest.tokens.shape[:2] == (len(lens), 4) and nbest.scores.shape == (len(lens), 4)
    assert torch.equal(nbest.tokens[:, 0], best)
    assert (nbest.scores[:, :-1] >= nbest.scores[:, 1:]).all()
    for i, n in enumerate(lens.tolist()):
        hyps = strip(nbest.tokens[i], EOS)
        assert len({tuple(h) for h in hyps}) == 4
        for ids, score in zip(hyps, nbest.scores[i].tolist()):
            assert score == pytest.approx(teacher_forced_score(m, src[i : i + 1, :n], lens[i : i + 1], ids, alpha),
                                          abs=1e-4)


def test_greedy_score_is_the_length_normalised_log_probability() -> None:
    m, (src, lens) = random_model("luong", 2), varied_batch(2)
    out = greedy(m, src, lens, output_limits(lens, 12), bos=BOS, eos=EOS, alpha=1.0)
    for i, (ids, score) in enumerate(zip(strip(out.tokens[:, 0], EOS), out.scores[:, 0].tolist())):
        n = int(lens[i])
        assert score == pytest.approx(teacher_forced_score(m, src[i : i + 1, :n], lens[i : i + 1], ids, 1.0), abs=1e-4)


def test_n_best_above_beam_size_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"n_best must be <= beam_size.*n_best=6 with beam_size=5"):
        DecodingConfig(beam_size=5, n_best=6)


@pytest.mark.parametrize("attention", WIRINGS)
def test_an_ensemble_of_one_model_listed_twice_is_that_model(attention: str) -> None:
    m, (src, lens) = random_model(attention, 0), varied_batch(0)
    twice = Ensemble([m, m])
    for beam_size in (1, 4):
        decoding = DecodingConfig(beam_size=beam_size, max_len=12, n_best=beam_size)
        alone = decode_ids(m, src, lens, decoding, bos=BOS, eos=EOS)
        assert decode_ids(twice, src, lens, decoding, bos=BOS, eos=EOS) == alone
        limits = output_limits(lens, 12)
        a = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=1.0, n_best=4)
        b = beam_search(twice, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=1.0, n_best=4)
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.scores, b.scores)


def test_an_ensemble_averages_log_probabilities() -> None:
    """Three different models (luong, bahdanau, cgru): the ensemble's first-step choice is the argmax of their
    mean log_softmax, and it differs from at least one member's own choice somewhere (else the test shows little)."""
    members = [random_model("luong", 0), random_model("bahdanau", 1), random_model("cgru:bahdanau", 2)]
    src, lens = varied_batch(3)
    firsts = []
    for model in members:
        memory, hidden = model.encode(src, lens)
        with torch.no_grad():
            logits, _, _ = model.decoder(torch.full((len(lens), 1), BOS), hidden, memory)
        firsts.append(torch.log_softmax(logits[:, 0], -1))
    mean = torch.stack(firsts).mean(0)
    mean[:, [PAD, BOS]] = float("-inf")
    limits = output_limits(lens, 12)
    out = greedy(Ensemble(members), src, lens, limits, bos=BOS, eos=EOS).tokens[:, 0, 0]
    assert torch.equal(out, mean.argmax(1))
    singles = [greedy(m, src, lens, limits, bos=BOS, eos=EOS).tokens[:, 0, 0] for m in members]
    assert not all(torch.equal(out, s) for s in singles)


def prefix_tensor(rows: list[list[int]]) -> torch.Tensor:
    """Forced pieces per sentence (B, P), PAD after each sentence's own."""
    out = torch.full((len(rows), max(map(len, rows))), PAD)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


@pytest.mark.parametrize("attention", WIRINGS)
@pytest.mark.parametrize("ensemble", [False, True])
def test_forcing_the_start_of_the_greedy_output_changes_nothing(attention: str, ensemble: bool) -> None:
    """Greedy search forced to begin with the first two pieces of its own output returns that output and score."""
    m = Ensemble([random_model(attention, 0), random_model("luong", 1)]) if ensemble else random_model(attention, 0)
    src, lens = varied_batch(0)
    limits = output_limits(lens, 12)
    free = greedy(m, src, lens, limits, bos=BOS, eos=EOS, alpha=1.0)
    ids = strip(free.tokens[:, 0], EOS)
    assert sum(len(row) >= 2 for row in ids) >= 6  # most sentences get a two-piece prefix
    forced = greedy(m, src, lens, limits, bos=BOS, eos=EOS, alpha=1.0, prefix=prefix_tensor([row[:2] for row in ids]))
    assert strip(forced.tokens[:, 0], EOS) == ids
    torch.testing.assert_close(forced.scores, free.scores)


@pytest.mark.parametrize("attention", WIRINGS)
def test_forced_pieces_begin_every_hypothesis_and_count_in_its_score(attention: str) -> None:
    """Beam search with per-sentence prefixes (one sentence has none): every n-best hypothesis begins with its
    sentence's prefix, scores are the teacher-forced log-probabilities of the whole output (prefix included),
    and the sentence without a prefix gets the unforced search's hypotheses. A prefix beyond the sentence's
    limit leaves one hypothesis: the prefix, then EOS (the others stay at -inf, as the translator drops them)."""
    m, (src, lens) = random_model(attention, 2), varied_batch(2)
    limits = output_limits(lens, 12)
    g = torch.Generator().manual_seed(5)
    rows = [torch.randint(4, VOCAB, (i % 4,), generator=g).tolist() for i in range(len(lens))]  # lengths 0..3
    rows[3] = [4, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 4, 5]  # longer than this sentence's usual output
    prefix = prefix_tensor(rows)
    forced = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=1.0, n_best=3, prefix=prefix)
    free = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=4, alpha=1.0, n_best=3)
    assert limits[3] < len(rows[3])
    assert strip(forced.tokens[3, :1], EOS) == [rows[3]] and forced.scores[3, 1:].isinf().all()
    for i, n in enumerate(lens.tolist()):
        found = forced.scores[i].isfinite()
        hyps = strip(forced.tokens[i, found], EOS)
        assert hyps and all(h[: len(rows[i])] == rows[i] for h in hyps), (rows[i], hyps)
        for ids, score in zip(hyps, forced.scores[i, found].tolist()):
            assert score == pytest.approx(teacher_forced_score(m, src[i : i + 1, :n], lens[i : i + 1], ids, 1.0),
                                          abs=1e-4)
        if not rows[i]:
            assert hyps == strip(free.tokens[i], EOS)
    one = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=1, alpha=1.0, prefix=prefix)
    assert torch.equal(one.tokens, greedy(m, src, lens, limits, bos=BOS, eos=EOS, prefix=prefix).tokens)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_prefix_longer_than_the_limit_is_forced_whole_then_ended(beam_size: int) -> None:
    m, (src, lens) = random_model("luong", 0), varied_batch(0)
    limits = torch.full((len(lens),), 2)
    rows = [[5, 6, 7, 8]] * len(lens)
    found = beam_search(m, src, lens, limits, bos=BOS, eos=EOS, beam_size=beam_size, alpha=1.0,
                        prefix=prefix_tensor(rows))
    assert strip(found.tokens[:, 0], EOS) == rows and (found.tokens[:, 0, 4] == EOS).all()


def sampling(method: str, top_k: int = VOCAB, top_p: float = 1.0, temperature: float = 1.0) -> Sampling:
    return Sampling(method, top_k, top_p, temperature, seed=0)


def sample(m, src, lens, limits, how: Sampling, seeds: list[int]) -> torch.Tensor:
    """Sampled tokens (B, T)."""
    sampler = Sampler(how, seeds, limits, int(limits.max()) + 1)
    return greedy(m, src, lens, limits, bos=BOS, eos=EOS, sampler=sampler).tokens[:, 0]


@pytest.mark.parametrize("attention", WIRINGS)
@pytest.mark.parametrize("how", [sampling("top_k", temperature=1e-6), sampling("top_p", temperature=1e-6),
                                 sampling("top_k", top_k=1, temperature=5.0)])
def test_sampling_at_temperature_near_zero_or_from_one_piece_is_greedy(attention: str, how: Sampling) -> None:
    m, (src, lens) = random_model(attention, 1), varied_batch(1)
    limits = output_limits(lens, 12)
    assert torch.equal(sample(m, src, lens, limits, how, list(range(len(lens)))),
                       greedy(m, src, lens, limits, bos=BOS, eos=EOS).tokens[:, 0])


def first_piece_probabilities(m: EncoderDecoder, src: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """The model's distribution of the first target piece (V,) for one sentence, PAD and BOS excluded."""
    memory, hidden = m.encode(src, lens)
    with torch.no_grad():
        logits, _, _ = m.decoder(torch.full((1, 1), BOS), hidden, memory)
    logits = logits[0, 0].double()
    logits[[PAD, BOS]] = float("-inf")
    return torch.softmax(logits, 0)


@pytest.mark.parametrize("method, temperature", [("top_k", 1.0), ("top_k", 2.0), ("top_p", 1.0), ("top_p", 0.5)])
def test_sampled_first_pieces_follow_the_truncated_distribution(method: str, temperature: float) -> None:
    """4,000 draws of one sentence's first piece (one seed each): the pieces outside the top 4 (or outside the
    nucleus of probability 0.8) never come; the others come as often as their renormalized probability at
    that temperature says, within 5 standard deviations."""
    m = random_model("luong", 3)
    src, lens = varied_batch(3)
    src, lens = src[:1, : int(lens[0])], lens[:1]
    p = first_piece_probabilities(m, src, lens) ** (1 / temperature)
    p /= p.sum()
    order = p.argsort(descending=True)
    if method == "top_k":
        kept = order[:4]
    else:
        before = p[order].cumsum(0) - p[order]
        kept = order[before < 0.8]
    assert 2 <= len(kept) < VOCAB - 2  # the truncation matters, and there is something to draw among
    expected = torch.zeros_like(p)
    expected[kept] = p[kept] / p[kept].sum()
    n = 4000
    draws = sample(m, src.expand(n, -1), lens.expand(n), torch.ones(n, dtype=torch.long),
                   sampling(method, top_k=4, top_p=0.8, temperature=temperature), list(range(n)))[:, 0]
    counts = torch.bincount(draws, minlength=VOCAB).double()
    assert counts[expected == 0].sum() == 0
    sigma = (n * expected * (1 - expected)).sqrt()
    assert ((counts - n * expected).abs() <= 5 * sigma + 1).all(), (counts[kept], n * expected[kept])


def test_a_sentence_draws_the_same_sample_in_any_batch() -> None:
    """Each sentence sampled alone, and the batch sampled in reverse order, give the batch's samples; other
    seeds give other samples."""
    m, (src, lens) = random_model("luong", 4), varied_batch(4)
    limits = output_limits(lens, 12)
    how, seeds = sampling("top_p", top_p=0.95), [100 + i for i in range(len(lens))]
    together = strip(sample(m, src, lens, limits, how, seeds), EOS)
    assert together != strip(greedy(m, src, lens, limits, bos=BOS, eos=EOS).tokens[:, 0], EOS)
    for i, n in enumerate(lens.tolist()):
        alone = sample(m, src[i : i + 1, :n], lens[i : i + 1], limits[i : i + 1], how, seeds[i : i + 1])
        assert strip(alone, EOS) == together[i : i + 1]
    back = torch.arange(len(lens) - 1, -1, -1)
    reverse = sample(m, src[back], lens[back], limits[back], how, [seeds[i] for i in back.tolist()])
    assert strip(reverse, EOS)[::-1] == together
    assert strip(sample(m, src, lens, limits, how, [s + 1 for s in seeds]), EOS) != together
