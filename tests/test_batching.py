"""The token-budget sampler's batches, pinned: the digest below was taken from the sampler as of
commit 8800875 (a per-sentence Python loop), before it was vectorised; both give the same batches."""
import hashlib
import json
from collections.abc import Iterator

import numpy as np

from seq2seq.data.batching import TokenBatchSampler

PINNED = "c5602a2b0e5815fd6f25982e09b6927cad55c5be5968ade268d8ecbf718d0e5b"


def cases() -> Iterator[tuple]:
    """(key, src_lens, tgt_lens, max_tokens, shuffle, seed, epoch, rank, world_size) over a grid."""
    rng = np.random.default_rng(0)
    a = (rng.integers(1, 60, 600), rng.integers(1, 60, 600))
    rng = np.random.default_rng(1)
    b = (rng.integers(1, 400, 257), rng.integers(0, 30, 257))  # some sentences alone exceed the budget
    c = ([(i * 7) % 23 + 1 for i in range(500)],) * 2  # many ties
    d = (np.random.default_rng(2).integers(1, 90, 1000), np.zeros(1000, int))  # the translator's: source only
    for name, (src, tgt) in {"a": a, "b": b, "c": c, "d": d}.items():
        for max_tokens in (120, 300):
            for shuffle in (True, False):
                for seed in (0, 3):
                    for epoch in (0, 1, 5):
                        for world in (1, 2, 3):
                            for rank in range(world):
                                key = f"{name}-{max_tokens}-{shuffle}-{seed}-{epoch}-{world}-{rank}"
                                yield key, src, tgt, max_tokens, shuffle, seed, epoch, rank, world


def test_batches_are_the_pinned_ones() -> None:
    digest = hashlib.sha256()
    for key, src, tgt, max_tokens, shuffle, seed, epoch, rank, world in cases():
        sampler = TokenBatchSampler(src, tgt, max_tokens, shuffle, seed, rank, world)
        sampler.set_epoch(epoch)
        batches = sampler.batches()
        assert list(sampler) == batches and len(sampler) == len(batches)
        digest.update(key.encode())
        digest.update(json.dumps(batches).encode())
    assert digest.hexdigest() == PINNED


def test_a_small_case_in_full() -> None:
    src, tgt = [5, 3, 9, 1, 7, 2, 8], [4, 6, 2, 8, 1, 3, 5]
    expected = {True: [[3], [6, 1], [4, 2], [5, 0]], False: [[4, 2], [5, 0], [6, 1], [3]]}
    for shuffle, batches in expected.items():
        sampler = TokenBatchSampler(src, tgt, 20, shuffle, seed=1)
        sampler.set_epoch(2)
        assert sampler.batches() == batches
