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
"""
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from seq2seq.data.tokenizer import BOS, EOS, PAD


class TokenBatchSampler(Sampler[list[int]]):
    def __init__(self, src_lens: Sequence[int], tgt_lens: Sequence[int], max_tokens: int,
                 shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.src_lens, self.tgt_lens = np.asarray(src_lens), np.asarray(tgt_lens)
        self.max_tokens, self.shuffle, self.seed = max_tokens, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.resume_at: tuple[int, int] | None = None  # (epoch, batches of it already trained)
        self.start = 0  # the first batch of the current iteration
        # Lightning calls set_epoch on `loader.batch_sampler.sampler` (not on the batch sampler) each epoch.
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This rank's batches for the current epoch."""
        rng = np.random.default_rng((self.seed, self.epoch))
        tie = rng.random(len(self.src_lens)) if self.shuffle else np.arange(len(self.src_lens))
        order = np.lexsort((tie, self.src_lens, self.tgt_lens))  # by target, then source length
        cost = np.maximum(self.src_lens, self.tgt_lens + 1)  # padded positions per sentence
        batches, current, longest = [], [], 0
        for idx in order.tolist():
            if current and max(longest, cost[idx]) * (len(current) + 1) > self.max_tokens:
                batches.append(current)
                current, longest = [], 0
            current.append(idx)
            longest = max(longest, cost[idx])
        if current:
            batches.append(current)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.world_size > 1 and batches:
            # Every rank needs at least one batch (an empty rank hangs the others); in training, as many as the
            # others. Repeat the first batches, as DistributedSampler repeats samples; evaluation drops repeats by id.
            n = len(batches)
            want = -(-n // self.world_size) * self.world_size if self.shuffle else max(n, self.world_size)
            batches = [batches[i % n] for i in range(want)][self.rank :: self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        """This epoch's batches from where a resumed run left off. The order is drawn at the first
        batch, so an iterator made before set_epoch() still follows the epoch."""
        batches = self.batches()
        resume, self.resume_at = self.resume_at, None
        self.start = resume[1] if resume is not None and resume[0] == self.epoch else 0
        yield from batches[self.start :]

    def __len__(self) -> int:
        return len(self.batches())


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
    """Examples {"id", "src_ids", "tgt_ids", "tgt"} -> padded tensors and the raw references.

    src (B, S), src_lens (B,), tgt_in (B, T) = BOS + target, tgt_out (B, T) = target + EOS, ids (B,).
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
            "ids": torch.tensor([e["id"] for e in examples]), "refs": [e["tgt"] for e in examples]}


def batch_size(batch: dict) -> int:
    return batch["src"].size(0)


def target_tokens(batch: dict) -> int:
    return int((batch["tgt_out"] != PAD).sum())
