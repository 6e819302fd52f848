"""Token-budget batches and their collation.

Training batches group sentences of similar length (sorted with random tie-breaking), hold at most
`max_tokens` padded tokens on either side, and come in a shuffled order that is fixed by
(seed, epoch). Under DDP each rank takes every world_size-th batch; the list is first padded by
repeating its first batches so that every rank has as many (as DistributedSampler does).
Evaluation batches keep every sentence, sorted by length for speed; each batch carries the
sentences' indices so results are put back into corpus order.

A training run killed mid-epoch resumes at the batch after the last one trained: `ResumableLoader`
is the DataLoader Lightning checkpoints (it has state_dict/load_state_dict) and it tells its
sampler where to start.

With subword sampling each epoch segments the training pairs anew, so their lengths change with the epoch:
`SegmentedBatchSampler` asks for the epoch's lengths before it cuts the epoch's batches, and each of its
batches carries its epoch (`EpochBatch`) so that the rows are read from that epoch's segmentation.
"""
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from seq2seq.data.tokenizer import BOS, EOS, PAD


class TokenBatchSampler(Sampler[list[int]]):
    """Batches of sentence indices from the sentences' lengths, src_lens (N,) and tgt_lens (N,).

    The epoch's batches are computed once per epoch with numpy: a sort, then one short vectorised
    step per batch (never a Python step per sentence), held as the sorted order and batch bounds.
    """

    def __init__(self, src_lens: Sequence[int], tgt_lens: Sequence[int], max_tokens: int,
                 shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.src_lens, self.tgt_lens = np.asarray(src_lens), np.asarray(tgt_lens)
        self.max_tokens, self.shuffle, self.seed = max_tokens, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches of it already trained)
        self.start = 0  # the first batch of the current iteration
        self._plan: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None  # (epoch, order, bounds, picked)
        # Lightning calls set_epoch on `loader.batch_sampler.sampler` (not on the batch sampler) each epoch.
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """(src_lens (N,), tgt_lens (N,)) of the sentences of the current epoch."""
        return self.src_lens, self.tgt_lens

    def _batch(self, ids: np.ndarray) -> list[int]:
        return ids.tolist()

    def _epoch_plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order (N,), bounds (B + 1,), picked (b,)): batch j is order[bounds[j]:bounds[j + 1]]; this
        rank's batches are the batches `picked`, in that order."""
        if self._plan is None or self._plan[0] != self.epoch:
            src_lens, tgt_lens = self.lengths()
            n = len(src_lens)
            rng = np.random.default_rng((self.seed, self.epoch))
            tie = rng.random(n) if self.shuffle else np.arange(n)
            order = np.lexsort((tie, src_lens, tgt_lens))  # by target, then source length
            cost = np.maximum(src_lens, tgt_lens + 1)[order]  # padded positions per sentence
            bounds = pack(cost, self.max_tokens)
            picked = rng.permutation(len(bounds) - 1) if self.shuffle else np.arange(len(bounds) - 1)
            if self.world_size > 1 and len(picked):
                # Every rank needs at least one batch (an empty rank hangs the others); in training, as many as
                # the others. Repeat the first batches, as DistributedSampler repeats samples; evaluation drops
                # repeats by id.
                b = len(picked)
                want = -(-b // self.world_size) * self.world_size if self.shuffle else max(b, self.world_size)
                picked = picked[np.arange(want) % b][self.rank :: self.world_size]
            self._plan = (self.epoch, order, bounds, picked)
        return self._plan[1:]

    def batches(self) -> list[list[int]]:
        """This rank's batches for the current epoch."""
        order, bounds, picked = self._epoch_plan()
        return [self._batch(order[bounds[j] : bounds[j + 1]]) for j in picked]

    def __iter__(self) -> Iterator[list[int]]:
        """This epoch's batches from where a resumed run left off. The order is drawn at the first
        batch, so an iterator made before set_epoch() still follows the epoch."""
        order, bounds, picked = self._epoch_plan()
        resume, self.resume_at = self.resume_at, None
        self.start = resume[1] if resume is not None and resume[0] == self.epoch else 0
        for j in picked[self.start :]:
            yield self._batch(order[bounds[j] : bounds[j + 1]])

    def __len__(self) -> int:
        return len(self._epoch_plan()[2])


class EpochLengths(Protocol):
    def lengths(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(src_lens (N,), tgt_lens (N,)) of the sentences as segmented in `epoch`."""


class EpochBatch(list):
    """A batch of sentence indices (a list) that knows the epoch whose segmentation they index."""

    def __init__(self, epoch: int, ids: Sequence[int]) -> None:
        super().__init__(ids)
        self.epoch = epoch


class SegmentedBatchSampler(TokenBatchSampler):
    """Shuffled token-budget batches of training sentences whose segmentation, and so whose lengths, change
    every epoch: each epoch's batches are cut from `segmented.lengths(epoch)`, asked for before its first
    batch; the batches are EpochBatch lists. Everything else (ranks, resume) is TokenBatchSampler's."""

    def __init__(self, segmented: EpochLengths, max_tokens: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 epoch: int = 0) -> None:
        super().__init__([], [], max_tokens, True, seed, rank, world_size)
        self.segmented, self.epoch = segmented, epoch

    def lengths(self) -> tuple[np.ndarray, np.ndarray]:
        return self.segmented.lengths(self.epoch)

    def _batch(self, ids: np.ndarray) -> EpochBatch:
        return EpochBatch(self.epoch, ids.tolist())


def pack(cost: np.ndarray, max_tokens: int) -> np.ndarray:
    """Greedy batches over sentences in order: bounds (B + 1,) such that each batch [bounds[j], bounds[j + 1])
    is the longest run whose size x longest cost stays within max_tokens (a sentence over it alone).

    One step per batch: the running maximum of a window of costs gives every prefix's padded size.
    """
    n, start, window, bounds = len(cost), 0, 64, [0]
    while start < n:
        while True:
            longest = np.maximum.accumulate(cost[start : start + window])
            over = np.flatnonzero(longest * np.arange(1, len(longest) + 1) > max_tokens)
            if len(over) or start + window >= n or window > max_tokens:
                break
            window *= 2
        size = max(int(over[0]), 1) if len(over) else len(longest)
        start += size
        bounds.append(start)
        window = 2 * size + 1
    return np.asarray(bounds)


class ResumableLoader(DataLoader):
    """A DataLoader over a TokenBatchSampler whose position in the epoch goes into checkpoints
    (Lightning saves and restores the state of a train loader that has state_dict/load_state_dict).

    The state counts the batches of the epoch that all ranks together have taken (each rank takes every
    world_size-th one), so a run resumes with any number of ranks. With W ranks after B of them, every rank
    continues at its batch B // W: exactly where the run left off when W divides B (always for one rank, and
    for W dividing the saved world size), otherwise after at most W - 1 batches taken a second time (never one
    skipped). A checkpoint of an older version (no "world_size") counts this world's batches.
    """

    batch_sampler: TokenBatchSampler

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._epoch, self._position = 0, 0  # batches of `_epoch` handed out, counting those skipped on resume

    def __iter__(self) -> Iterator[dict]:
        for n, batch in enumerate(super().__iter__()):
            self._epoch, self._position = self.batch_sampler.epoch, self.batch_sampler.start + n + 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        sampler = self.batch_sampler
        return {"epoch": self._epoch, "position": self._position, "world_size": sampler.world_size,
                "done": int(self._position >= len(sampler))}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue the saved epoch after its last trained batch, or start the next if it was complete."""
        sampler = self.batch_sampler
        epoch, world = state["epoch"], state.get("world_size", sampler.world_size)
        sampler.set_epoch(epoch)
        done = state["done"] if "done" in state else state["position"] >= len(sampler)
        if done:
            epoch, position = epoch + 1, 0
            sampler.set_epoch(epoch)
        else:
            position = state["position"] * world // sampler.world_size
        sampler.resume_at = (epoch, position)


def collate(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Examples {"id", "src_ids", "tgt_ids", "tgt"?} -> padded tensors and the raw references.

    src (B, S), src_lens (B,), tgt_in (B, T) = BOS + target, tgt_out (B, T) = target + EOS, ids (B,);
    refs: the target texts (evaluation splits carry them; training examples need none: []).
    """
    batch = len(examples)
    src_lens = torch.tensor([len(e["src_ids"]) for e in examples])
    tgt_lens = torch.tensor([len(e["tgt_ids"]) + 1 for e in examples])
    src = torch.full((batch, int(src_lens.max())), PAD)
    tgt_in = torch.full((batch, int(tgt_lens.max())), PAD)
    tgt_out = torch.full_like(tgt_in, PAD)
    for i, e in enumerate(examples):
        src[i, : len(e["src_ids"])] = torch.as_tensor(e["src_ids"], dtype=torch.long)
        t = torch.as_tensor([BOS, *e["tgt_ids"], EOS], dtype=torch.long)
        tgt_in[i, : len(t) - 1], tgt_out[i, : len(t) - 1] = t[:-1], t[1:]
    return {"src": src, "src_lens": src_lens, "tgt_in": tgt_in, "tgt_out": tgt_out,
            "ids": torch.tensor([e["id"] for e in examples]), "refs": [e["tgt"] for e in examples if "tgt" in e]}


def batch_size(batch: dict) -> int:
    return batch["src"].size(0)


def target_tokens(batch: dict) -> int:
    return int((batch["tgt_out"] != PAD).sum())
