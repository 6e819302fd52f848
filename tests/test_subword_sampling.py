"""Subword sampling (data.subword_sampling): a new segmentation of every training pair each epoch, drawn once
and stored, cut into batches from its own lengths, the same on every rank and on resume; val/test and sampling
off unchanged."""
import hashlib
import shutil
import types
from pathlib import Path

import datasets
import numpy as np
import pytest
from hydra.utils import instantiate

from conftest import FIXTURES, TINY, compose_config, one_line_error, run_script
from seq2seq import modelfile
from seq2seq.config import ConfigError, SubwordSamplingConfig
from seq2seq.data import DataError
from seq2seq.data.batching import EpochBatch, ResumableLoader, TokenBatchSampler
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.training.datamodule import TranslationDataModule

SMALL = ["data.train_limit=600", "data.eval_limit=50"]
BUDGET = ["data.max_tokens=600", "data.max_len=60"]  # most pairs of the 500-piece vocabulary's segmentations fit
SAMPLING = [*BUDGET, "data.subword_sampling.enabled=true", "data.subword_sampling.smoothing=0.2"]
# sha256 of the batches of `batch_digest` with sampling off, computed with the code of main at 8201b82 (before
# subword sampling existed): the same tensors, byte for byte.
TODAY = "ea7076cea2c36f996e5d22f4c0e8483e9a15bd4d3376a2f9777eee860ce8d00c"


def fixture_tokenizer() -> Tokenizer:
    """A stored SentencePiece model (the v2 fixture model file's): the same pieces on every machine."""
    return Tokenizer.from_state(modelfile.read_contents(FIXTURES / "model_v2.pt")["tokenizer"])


class FakeStrategy:
    """What the data module asks of Lightning's strategy, for ranks simulated one after another in one process:
    broadcast returns what rank 0 last broadcast; each rank reduces only its own decision."""
    sent: dict[str, object] = {}

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def broadcast(self, obj: object) -> object:
        if self.rank == 0:
            FakeStrategy.sent["obj"] = obj
        return FakeStrategy.sent["obj"]

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision


def datamodule(run_dir: Path, *overrides: str, rank: int | None = None, world: int = 2, epoch: int = 0,
               fixture: bool = True) -> TranslationDataModule:
    """The data module of a run in `run_dir` on 600 Multi30k pairs with the fixture tokenizer (fixture=False: one
    trained as a run trains it), prepared and set up; with `rank`, as that rank of `world` sees it, at `epoch` (a
    stand-in for the trainer's fields it reads)."""
    if fixture and not (run_dir / "tokenizer").is_dir():
        fixture_tokenizer().save(run_dir / "tokenizer")
    dm = instantiate(compose_config("train", [*SMALL, *overrides], run_dir).data)
    dm.prepare_tokenizer(run_dir / "tokenizer")
    dm.prepare_data()
    if rank is not None:
        progress = types.SimpleNamespace(current=types.SimpleNamespace(processed=epoch))
        dm.trainer = types.SimpleNamespace(global_rank=rank, world_size=world, reload_dataloaders_every_n_epochs=0,
                                           fit_loop=types.SimpleNamespace(epoch_progress=progress),
                                           strategy=FakeStrategy(rank))
    dm.setup()
    return dm


def segmentation(dm: TranslationDataModule, epoch: int) -> dict[int, tuple[list[int], list[int]]]:
    """{pair id: (src_ids, tgt_ids)} of the trainable pairs as segmented in `epoch`."""
    table = dm.splits["train"].epoch(epoch)[0]
    return {i: (s, t) for i, s, t in zip(table["id"], table["src_ids"], table["tgt_ids"], strict=True)}


def planned(dm: TranslationDataModule, epoch: int) -> list[tuple[int, ...]]:
    """The pair ids of each batch a one-rank sampler cuts for `epoch` (it batches rows of the epoch's table)."""
    ids = np.asarray(dm.splits["train"].epoch(epoch)[0]["id"])
    return [tuple(ids[b].tolist()) for b in epoch_loader(dm, epoch).batch_sampler.batches()]


def trained(loader) -> list[tuple[int, ...]]:
    """Each batch of a loader as (pair ids..., then a digest of its source and target tensors)."""
    out = []
    for b in loader:
        tensors = hashlib.sha256(b["src"].numpy().tobytes() + b["tgt_out"].numpy().tobytes()).hexdigest()
        out.append((*b["ids"].tolist(), tensors))
    return out


def epoch_loader(dm: TranslationDataModule, epoch: int) -> ResumableLoader:
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(epoch)
    return loader


def test_settings_are_checked_and_named() -> None:
    assert SubwordSamplingConfig() == SubwordSamplingConfig(enabled=False, smoothing=0.1, nbest_size=-1)
    for bad, key in (({"smoothing": 0}, "smoothing"), ({"smoothing": 1.5}, "smoothing"), ({"nbest_size": 1}, "nbest_size"),
                     ({"nbest_size": 0}, "nbest_size"), ({"enabled": "yes"}, "enabled")):
        with pytest.raises(ConfigError, match=rf"^data\.subword_sampling\.{key} must"):
            SubwordSamplingConfig(**bad)


def test_a_bad_setting_stops_training_with_one_error_line(tmp_path: Path, capfd) -> None:
    code = run_script("train", f"hydra.run.dir={tmp_path}", "data.subword_sampling.enabled=true",
                      "data.subword_sampling.nbest_size=1")
    assert code == 2
    one_line_error(capfd, "data.subword_sampling.nbest_size")


def test_sampling_settings_are_not_the_tokenizers(tmp_path: Path, monkeypatch) -> None:
    """Other sampling settings reuse the cached SentencePiece model and the encoded val/test splits."""
    trainings = []
    real_train = Tokenizer.train.__func__
    monkeypatch.setattr(Tokenizer, "train", classmethod(lambda cls, *a, **k: trainings.append(1) or real_train(cls, *a, **k)))
    cache, small_vocab = f"data.cache_dir={tmp_path / 'cache'}", "data.tokenizer.vocab_size=400"
    first = datamodule(tmp_path / "a", *SAMPLING, cache, small_vocab, fixture=False)
    other = datamodule(tmp_path / "b", "data.subword_sampling.enabled=true", "data.subword_sampling.smoothing=0.5",
                       "data.subword_sampling.nbest_size=8", cache, small_vocab, fixture=False)
    assert trainings == [1] and first.tokenizer.state() == other.tokenizer.state()
    for split in ("val", "test"):
        assert [f["filename"] for f in first.splits[split].cache_files] == \
               [f["filename"] for f in other.splits[split].cache_files]
    assert segmentation(first, 0) != segmentation(other, 0)  # the settings do change the sampled segmentation


def test_one_draw_per_seed_and_epoch_spelling_each_pair(tmp_path: Path) -> None:
    """Two runs on one cache read one stored draw of (seed, epoch); another epoch or seed draws most pairs
    differently; every sampled segmentation spells the pair's text; two processes draw an epoch as well."""
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    dm = datamodule(tmp_path / "one", *SAMPLING, cache)
    first = segmentation(dm, 1)
    again = datamodule(tmp_path / "two", *SAMPLING, cache, "data.num_proc=2")
    assert segmentation(again, 1) == first
    assert [f["filename"] for f in again.splits["train"].epoch(1)[0].cache_files] == \
           [f["filename"] for f in dm.splits["train"].epoch(1)[0].cache_files]  # read, not drawn again
    assert len([p for p in (tmp_path / "cache" / "encoded").iterdir() if p.is_dir()]) == 2  # val, test: no train
    other_seed = datamodule(tmp_path / "seed", *SAMPLING, cache, "seed=7")
    two_processes = datamodule(tmp_path / "procs", *SAMPLING, f"data.cache_dir={tmp_path / 'cache2'}", "data.num_proc=2")
    raw = dm.load("train")
    viterbi = dict(enumerate(zip(dm.tokenizer.encode_src(list(raw["src"])), dm.tokenizer.encode_tgt(list(raw["tgt"])),
                                 strict=True)))
    for other in (segmentation(dm, 0), segmentation(dm, 2), segmentation(other_seed, 1), viterbi):
        common = first.keys() & other.keys()
        assert len(common) > 400 and sum(first[i] != other[i] for i in common) > 0.8 * len(common)
    for pieces in (first, segmentation(two_processes, 1)):
        assert len(pieces) > 400
        for i, (src, tgt) in pieces.items():
            assert dm.tokenizer.src.decode(src) == dm.tokenizer.src.decode(viterbi[i][0])
            assert dm.tokenizer.decode_tgt([tgt]) == dm.tokenizer.decode_tgt([viterbi[i][1]])
            assert 1 < len(src) <= 61 and 0 < len(tgt) <= 60  # data.max_len filters the sampled lengths


def test_every_epoch_is_cut_from_its_own_lengths(tmp_path: Path) -> None:
    """Each epoch's batches hold that epoch's segmentation, within the token budget, every pair once."""
    dm = datamodule(tmp_path, *SAMPLING)
    for epoch in (0, 1):
        loader = epoch_loader(dm, epoch)
        pieces = segmentation(dm, epoch)
        ids = []
        for b in loader:
            assert b["src"].numel() <= 600 and b["tgt_out"].numel() <= 600
            for row, i in enumerate(b["ids"].tolist()):
                src, tgt = pieces[i]
                assert b["src"][row, : len(src)].tolist() == src and b["tgt_out"][row, : len(tgt)].tolist() == tgt
            ids += b["ids"].tolist()
        assert sorted(ids) == sorted(pieces) and len(loader) == len(loader.batch_sampler.batches())


def test_every_rank_cuts_the_same_batches(tmp_path: Path) -> None:
    """Two ranks (two data modules on one cache, as two processes): equal numbers of batches, together every
    pair of the epoch, each batch the batch of a one-rank run; the epoch's table is built once."""
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    alone = datamodule(tmp_path / "alone", *SAMPLING, cache)
    whole = {epoch: planned(alone, epoch) for epoch in (0, 1)}
    tables = sorted(p for p in (tmp_path / "cache" / "sampled").iterdir() if p.is_dir())
    assert len(tables) == 2
    for epoch in (0, 1):
        ranks = [datamodule(tmp_path / "ddp", *SAMPLING, cache, rank=r, epoch=epoch) for r in (0, 1)]
        assert all(dm.trainer.reload_dataloaders_every_n_epochs == 1 for dm in ranks)  # batches per epoch vary
        loaders = [dm.train_dataloader() for dm in ranks]  # at the trainer's epoch, before set_epoch
        assert all(loader.batch_sampler.epoch == epoch for loader in loaders)
        batches = [trained(loader) for loader in loaders]
        assert len(batches[0]) == len(batches[1]) > 0
        assert {b[:-1] for part in batches for b in part} <= set(whole[epoch])
        assert {i for part in batches for b in part for i in b[:-1]} == set(segmentation(alone, epoch))
        assert trained(loaders[0]) == batches[0]  # a second pass: the same tensors
    assert sorted(p for p in (tmp_path / "cache" / "sampled").iterdir() if p.is_dir()) == tables  # the ranks built nothing more


def test_a_resumed_epoch_continues_with_the_same_segmentation(tmp_path: Path) -> None:
    """A run stopped after 3 batches of epoch 1, resumed by a new data module (a new process) on the cache:
    the rest of the epoch is the uninterrupted run's, tensor for tensor."""
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    straight = trained(epoch_loader(datamodule(tmp_path / "straight", *SAMPLING, cache), 1))
    loader = epoch_loader(datamodule(tmp_path / "stopped", *SAMPLING, cache), 1)
    it = iter(loader)
    head = [next(it) for _ in range(3)]
    state = loader.state_dict()
    assert state == {"epoch": 1, "position": 3, "world_size": 1, "done": 0}

    resumed = datamodule(tmp_path / "stopped", *SAMPLING, cache, rank=0, world=1, epoch=1)
    loader = resumed.train_dataloader()
    loader.load_state_dict(state)
    rest = iter(loader)  # made before set_epoch, as Lightning does when it restores
    loader.batch_sampler.set_epoch(1)
    assert trained(head) + trained(rest) == straight
    assert all(isinstance(b, EpochBatch) and b.epoch == 1 for b in loader.batch_sampler.batches())


def test_ranks_with_their_own_caches_are_stopped(tmp_path: Path) -> None:
    """Ranks whose caches are not one folder would each draw an epoch and cut different batches."""
    datamodule(tmp_path / "node0", *SAMPLING, rank=0).train_dataloader()
    with pytest.raises(DataError, match="data.cache_dir .* must be one folder that every node shares"):
        datamodule(tmp_path / "node1", *SAMPLING, rank=1).train_dataloader()


def test_worker_processes_read_the_epoch_of_their_batches(tmp_path: Path) -> None:
    dm = datamodule(tmp_path, *SAMPLING)
    expected = trained(epoch_loader(dm, 2))
    dm.num_workers = 2
    loader = dm.train_dataloader()
    it = iter(loader)  # workers start with the dataset as it is now (epoch 0) ...
    loader.batch_sampler.set_epoch(2)  # ... and get epoch 2's batches
    assert trained(it) == expected


def test_validation_and_test_are_segmented_deterministically(tmp_path: Path) -> None:
    cache = f"data.cache_dir={tmp_path / 'cache'}"
    off, on = datamodule(tmp_path / "off", *BUDGET, cache), datamodule(tmp_path / "on", *SAMPLING, cache)
    for split in ("val", "test"):
        raw = on.load(split)
        assert list(on.splits[split]["src_ids"]) == on.tokenizer.encode_src(list(raw["src"]))
        assert list(on.splits[split]["tgt_ids"]) == on.tokenizer.encode_tgt(list(raw["tgt"]))
        assert [f["filename"] for f in on.splits[split].cache_files] == \
               [f["filename"] for f in off.splits[split].cache_files]
        loaders = (on.val_dataloader(), off.val_dataloader()) if split == "val" else \
                  (on.test_dataloader(), off.test_dataloader())
        assert all(type(loader.batch_sampler) is TokenBatchSampler for loader in loaders)
        assert trained(loaders[0]) == trained(loaders[1])


def batch_digest(dm: TranslationDataModule) -> str:
    """sha256 of epochs 0-2's training batches and the validation batches, as collated tensors."""
    h = hashlib.sha256()
    for epoch in (0, 1, 2):
        for b in epoch_loader(dm, epoch):
            for k in ("ids", "src", "src_lens", "tgt_in", "tgt_out"):
                h.update(b[k].numpy().tobytes())
    for b in dm.val_dataloader():
        for k in ("ids", "src", "tgt_out"):
            h.update(b[k].numpy().tobytes())
    return h.hexdigest()


def test_sampling_off_gives_the_batches_of_before(tmp_path: Path) -> None:
    dm = datamodule(tmp_path, "data.max_tokens=300", "data.max_len=20")
    assert isinstance(dm.splits["train"], datasets.Dataset)
    assert batch_digest(dm) == TODAY


@pytest.mark.slow
def test_training_with_sampling_trains_each_epochs_batches(tmp_path: Path) -> None:
    """Two epochs in Lightning, epoch 1 with more batches than epoch 0 (its draw is chosen so, in the run's
    cache): the trainer reloads the training batches every epoch and trains exactly each epoch's batches."""
    from seq2seq.training.train import train

    run_dir = tmp_path / "run"
    for _ in range(50):  # draw epoch 1 again until it has more batches than epoch 0
        dm = datamodule(run_dir, *SAMPLING)
        if len(planned(dm, 1)) > len(planned(dm, 0)):
            break
        shutil.rmtree(dm.splits["train"].folder(1))
    counts = [len(planned(dm, epoch)) for epoch in (0, 1)]
    assert counts[1] > counts[0]  # a batch count kept from epoch 0 would cut epoch 1 short
    overrides = [*TINY, *SMALL, *SAMPLING, "trainer.max_epochs=2", "decoding.beam_size=1", "decoding.max_len=20",
                 "logger={}", "++callbacks.curves=null", "+callbacks.record._target_=test_faults.BatchRecorder",
                 "+callbacks.record.path=${paths.run_dir}/batches.txt"]
    train(compose_config("train", overrides, run_dir))
    from test_faults import records

    got = records(run_dir)
    for epoch in (0, 1):
        assert [tuple(ids) for e, _, ids in got if e == epoch] == planned(dm, epoch)
