"""The LightningDataModule: splits as memory-mapped Arrow tables, SentencePiece and encoded splits
prepared once into `cache_dir`, batches by tokens; with subword sampling, one sampled segmentation of the
training split per epoch, also in `cache_dir`."""
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import datasets
import lightning as L
import numpy as np
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from seq2seq.config import ConfigError, SubwordSamplingConfig, check_int, from_dict
from seq2seq.data.batching import EpochBatch, ResumableLoader, SegmentedBatchSampler, TokenBatchSampler, collate
from seq2seq.data.cache import build_once, digest
from seq2seq.data.sources import DataError, cache_identity, load_split
from seq2seq.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)
LOCAL_FORMATS = ("text", "tsv", "jsonl")
STAGES = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
ENCODING = "ids-int32-v1"  # the encoded tables' layout; a new one re-encodes instead of misreading old caches
SAMPLE_RUN = 1_000  # the tokenizer's sample: consecutive pairs read from each random place (sample_rows)
ROWS_PER_PROCESS = 100_000  # num_proc=null: one tokenizing process per this many pairs, at most one per core


class PairEncoder:
    """The batched map function {src, tgt} -> {id, src_ids, tgt_ids, src_len, tgt_len} (a class, so that
    datasets' worker processes receive it pickled: the tokenizer travels as its model bytes); with `sampling`,
    segmentations drawn by SentencePiece's sampling instead of the most probable ones."""

    def __init__(self, tokenizer: Tokenizer, sampling: SubwordSamplingConfig | None = None) -> None:
        self.tokenizer, self.sampling = tokenizer, sampling

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        src = self.tokenizer.encode_src(batch["src"], self.sampling)
        tgt = self.tokenizer.encode_tgt(batch["tgt"], self.sampling)
        return {"id": indices, "src_ids": src, "tgt_ids": tgt,
                "src_len": [len(s) for s in src], "tgt_len": [len(t) for t in tgt]}


class SampledEpochs(Dataset):
    """The training split segmented anew by SentencePiece's sampling every epoch (data.subword_sampling).

    Epoch e's segmentation of every pair is drawn once and stored: an Arrow table {id, src_ids, tgt_ids,
    src_len, tgt_len} under `cache_dir/sampled/`, named by the corpus, tokenizer, sampling settings, seed and e,
    built by whichever rank or process asks for it first (the others wait for it, then memory-map it). Every
    rank, a resumed run and every later run with the same seed read that one draw: SentencePiece's own
    generator cannot repeat a draw in another process (it is salted per process), so the stored table is what
    makes an epoch's segmentation the same everywhere. lengths(e) gives the batch sampler the epoch's lengths
    (after the max_len filter) before it cuts the epoch's batches; a batch (EpochBatch) names its epoch, so
    DataLoader workers read that epoch's rows.
    """

    def __init__(self, raw: datasets.Dataset, tokenizer: Tokenizer, sampling: SubwordSamplingConfig, seed: int,
                 identity: list, max_len: int, cache_dir: Path, num_proc: int | None) -> None:
        self.raw, self.tokenizer, self.sampling, self.seed = raw, tokenizer, sampling, seed
        self.identity, self.max_len, self.cache_dir, self.num_proc = identity, max_len, cache_dir, num_proc
        self._current: tuple[int, datasets.Dataset, np.ndarray, np.ndarray] | None = None  # the last epoch opened

    def folder(self, epoch: int) -> Path:
        """Where epoch `epoch`'s draw is stored."""
        settings = [self.sampling.smoothing, self.sampling.nbest_size]
        return self.cache_dir / "sampled" / digest(self.identity, self.tokenizer.digest(), settings, self.seed, epoch,
                                                   ENCODING)

    def epoch(self, epoch: int) -> tuple[datasets.Dataset, np.ndarray, np.ndarray]:
        """Epoch `epoch`'s trainable pairs (drawn into the cache if missing), src_len (N,), tgt_len (N,)."""
        if self._current is None or self._current[0] != epoch:
            folder = self.folder(epoch)
            encoder = PairEncoder(self.tokenizer, self.sampling)
            build_once(folder, lambda tmp: encode(self.raw, encoder, False, tmp, self.num_proc))
            self._current = (epoch, *trainable(open_encoded(folder), self.max_len))
        return self._current[1:]

    def lengths(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        return self.epoch(epoch)[1:]

    def __getitems__(self, batch: EpochBatch) -> list[dict]:
        return self.epoch(batch.epoch)[0].__getitems__(list(batch))

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_current": None}  # a DataLoader worker memory-maps the epoch it is asked for


class TranslationDataModule(L.LightningDataModule):
    """Splits `train`, `val`, `test` of a parallel corpus as id sequences.

    source: {format, path, splits: {train, val, test}, columns?, name?}; `fallback` has the same keys
    and is used when a local `source.path` does not exist (e.g. the hub copy of a local corpus).
    Training keeps pairs whose both sides have 1..max_len pieces; val/test keep every sentence.

    Everything derived from the corpus lives under `cache_dir`, named by the corpus files (or hub
    dataset files), the limits and the tokenizer: the Arrow copy of local files, the SentencePiece
    model (trained on `tokenizer.sample_size` random training pairs, or all of them if fewer), and
    each split's ids and lengths. prepare_data() builds them on global rank 0; setup() on every rank
    memory-maps them; a later run with the same corpus and settings rebuilds nothing.

    Every setting's default and meaning is in conf/data/multi30k.yaml (docs/configuration.md), not here.
    """

    def __init__(self, *, src_lang: str, tgt_lang: str, source: dict, tokenizer: dict, fallback: dict | None,
                 max_tokens: int, eval_max_tokens: int, max_len: int, train_limit: int | None, eval_limit: int | None,
                 num_workers: int, seed: int, cache_dir: str, num_proc: int | None,
                 subword_sampling: dict | DictConfig) -> None:
        super().__init__()
        if max_tokens <= max_len + 1:
            raise ConfigError(f"data.max_tokens ({max_tokens}) must exceed data.max_len + 1 ({max_len + 1})")
        check_int("data.num_proc", num_proc, none_ok=True)
        self.sampling = from_dict(SubwordSamplingConfig, _plain(subword_sampling), "data.subword_sampling")
        self.tokenizer_cfg = _plain(tokenizer)
        self.sample_size = self.tokenizer_cfg.pop("sample_size", None)
        check_int("data.tokenizer.sample_size", self.sample_size)
        if not cache_dir:
            raise ConfigError("data.cache_dir must name a folder")
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        self.source = self._choose(_plain(source), fallback and _plain(fallback))
        self.max_tokens, self.eval_max_tokens, self.max_len = max_tokens, eval_max_tokens, max_len
        self.train_limit, self.eval_limit = train_limit, eval_limit
        self.num_workers, self.seed = num_workers, seed
        self.cache_dir, self.num_proc = Path(cache_dir), num_proc
        self.tokenizer: Tokenizer | None = None
        self.splits: dict[str, datasets.Dataset] = {}
        self.lengths: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # split -> (src_len (N,), tgt_len (N,))
        self.prepare_data_per_node = False  # global rank 0 prepares: cache_dir must be shared by all nodes

    @staticmethod
    def _choose(source: dict, fallback: dict | None) -> dict:
        if source["format"] in LOCAL_FORMATS and not Path(source["path"]).exists() and fallback:
            log.info("%s not found; using %s %s", source["path"], fallback["format"], fallback["path"])
            return fallback
        return source

    def load(self, split: str) -> datasets.Dataset:
        """The split's text pairs {src, tgt}, memory-mapped, cut to train_limit / eval_limit."""
        s = self.source
        ds = load_split(s["format"], s["path"], s["splits"][split], self.src_lang, self.tgt_lang, self.cache_dir,
                        s.get("columns"), s.get("name"))
        limit = self._limit(split)
        return ds.select(range(limit)) if limit and limit < len(ds) else ds

    def _limit(self, split: str) -> int | None:
        return self.train_limit if split == "train" else self.eval_limit

    def _identity(self, split: str, ds: datasets.Dataset) -> list:
        """What a split's derived data depends on: its files, columns, languages and limit."""
        return [self.source.get("columns"), self.src_lang, self.tgt_lang, self._limit(split), cache_identity(ds)]

    def prepare_tokenizer(self, folder: Path) -> Tokenizer:
        """The run's tokenizer: loaded from `folder` if saved there (resume, DDP ranks), else taken from
        the cache or trained into it, then saved in `folder`."""
        self.tokenizer = Tokenizer.load(folder)
        if self.tokenizer is None:
            train = self.load("train")
            cached = self.cache_dir / "tokenizer" / digest(self._identity("train", train), self.tokenizer_cfg,
                                                           self.sample_size)
            build_once(cached, lambda tmp: self._train_tokenizer(train).save(tmp))
            self.tokenizer = Tokenizer.load(cached)
            self.tokenizer.save(folder)
        return self.tokenizer

    def _train_tokenizer(self, train: datasets.Dataset) -> Tokenizer:
        """SentencePiece on sentences streamed off `sample_size` random training pairs (all, in corpus
        order, when there are no more)."""
        if len(train) > self.sample_size:
            train = train.select(sample_rows(len(train), self.sample_size), keep_in_memory=True)
        log.info("training SentencePiece on %d sentence pairs", len(train))
        return Tokenizer.train(_column(train, "src"), _column(train, "tgt"), **self.tokenizer_cfg)

    def prepare_data(self) -> None:
        """Encode the splits the trainer's stage needs into the cache (Lightning calls this on global
        rank 0, then setup() on every rank); a sampled training split is segmented per epoch instead."""
        stage = self.trainer.state.fn.value if self.trainer else None
        for split in STAGES.get(stage, ("train", "val", "test")):
            if not self._sampled(split):
                self._encoded(split)

    def setup(self, stage: str | None = None) -> None:
        """Memory-map the stage's encoded splits (encoding any that prepare_data did not) and their lengths.
        With subword sampling the trainer reloads the training DataLoader every epoch: an epoch's batches,
        and so their number, come from that epoch's segmentation."""
        assert self.tokenizer is not None, "call prepare_tokenizer() before setup()"
        for split in STAGES.get(stage, ("train", "val", "test")):
            if split not in self.splits:
                self._setup_split(split)
        if self.sampling.enabled and self.trainer is not None:
            self.trainer.reload_dataloaders_every_n_epochs = 1

    def _sampled(self, split: str) -> bool:
        return split == "train" and self.sampling.enabled

    def _setup_split(self, split: str) -> None:
        if self._sampled(split):
            raw = self.load(split)
            self.splits[split] = SampledEpochs(raw, self.tokenizer, self.sampling, self.seed, self._identity(split, raw),
                                               self.max_len, self.cache_dir, self.num_proc)
            return
        ds = self._encoded(split)
        if split == "train":
            self.splits[split], *lengths = trainable(ds, self.max_len)
        else:
            self.splits[split], lengths = ds, [ds.data.column(c).to_numpy() for c in ("src_len", "tgt_len")]
        self.lengths[split] = tuple(lengths)

    def _encoded(self, split: str) -> datasets.Dataset:
        """The split's {id, src_ids, tgt_ids, src_len, tgt_len} (+ tgt text for val/test), from the cache."""
        raw = self.load(split)
        keep_text = split != "train"  # references for BLEU
        folder = self.cache_dir / "encoded" / digest(self._identity(split, raw), self.tokenizer.digest(),
                                                     keep_text, ENCODING)
        build_once(folder, lambda tmp: encode(raw, PairEncoder(self.tokenizer), keep_text, tmp, self.num_proc))
        return open_encoded(folder)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if self._sampled(split):  # built for the epoch about to run (Lightning then calls set_epoch with it)
            epoch = self.trainer.fit_loop.epoch_progress.current.processed if self.trainer else 0
            sampler = SegmentedBatchSampler(self.splits[split], self.max_tokens, self.seed, rank, world, epoch)
            if world > 1:
                self._check_one_draw(epoch, sampler.lengths())
        else:
            sampler = TokenBatchSampler(*self.lengths[split], self.max_tokens if shuffle else self.eval_max_tokens,
                                        shuffle, self.seed, rank, world)
        loader = ResumableLoader if shuffle else DataLoader  # a killed run resumes mid-epoch
        return loader(self.splits[split], batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers)

    def _check_one_draw(self, epoch: int, lengths: tuple[np.ndarray, np.ndarray]) -> None:
        """Every rank must cut its batches from the one stored draw of the epoch: ranks whose data.cache_dir is
        not one shared folder would draw their own, cut other batches, and then wait for each other for ever."""
        mine = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in lengths)).hexdigest()
        strategy = self.trainer.strategy
        if not strategy.reduce_boolean_decision(strategy.broadcast(mine) == mine, all=True):
            raise DataError(f"data.subword_sampling: the ranks hold different segmentations of epoch {epoch}: "
                            f"data.cache_dir ({self.cache_dir}) must be one folder that every node shares")

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def encode(raw: datasets.Dataset, encoder: PairEncoder, keep_text: bool, folder: Path, num_proc: int | None) -> None:
    """Tokenize `raw` with datasets.map into Arrow files in `folder`, listed in folder/files.json."""
    procs = num_proc or min(len(os.sched_getaffinity(0)), -(-len(raw) // ROWS_PER_PROCESS))
    how = "sampled" if encoder.sampling else "deterministic"
    log.info("encoding %d sentence pairs (%s) with %d process%s", len(raw), how, procs, "es" * (procs > 1))
    start = time.perf_counter()
    ids = datasets.Sequence(datasets.Value("int32"))
    features = datasets.Features({**({"tgt": datasets.Value("string")} if keep_text else {}),
                                  "id": datasets.Value("int64"), "src_ids": ids, "tgt_ids": ids,
                                  "src_len": datasets.Value("int32"), "tgt_len": datasets.Value("int32")})
    ds = raw.map(encoder, batched=True, with_indices=True, num_proc=procs if procs > 1 else None,
                 remove_columns=["src"] if keep_text else ["src", "tgt"], features=features,
                 cache_file_name=str(folder / "encoded.arrow"), new_fingerprint=folder.name)
    (folder / "files.json").write_text(json.dumps([Path(f["filename"]).name for f in ds.cache_files]))
    seconds = time.perf_counter() - start
    log.info("encoded %d sentences in %.1f s (%.0f sentences/s)", 2 * len(raw), seconds, 2 * len(raw) / seconds)


def open_encoded(folder: Path) -> datasets.Dataset:
    """The encoded table `encode` wrote into `folder`, memory-mapped."""
    files = json.loads((folder / "files.json").read_text())
    return datasets.concatenate_datasets([datasets.Dataset.from_file(str(folder / f)) for f in files])


def trainable(ds: datasets.Dataset, max_len: int) -> tuple[datasets.Dataset, np.ndarray, np.ndarray]:
    """The encoded training pairs whose both sides have 1..max_len pieces (the source's EOS not counted), and
    their lengths src_len (N,), tgt_len (N,)."""
    src_len, tgt_len = (ds.data.column(c).to_numpy() for c in ("src_len", "tgt_len"))
    keep = (src_len > 1) & (src_len <= max_len + 1) & (tgt_len > 0) & (tgt_len <= max_len)
    if not keep.all():
        ds = ds.select(np.flatnonzero(keep), keep_in_memory=True)  # an index, not a copy of the rows
        src_len, tgt_len = src_len[keep], tgt_len[keep]
    return ds, src_len, tgt_len


def _plain(cfg: dict | DictConfig) -> dict:
    """A config node as a plain dict (it goes into cache keys)."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def sample_rows(n: int, size: int, seed: int = 0) -> np.ndarray:
    """`size` of the row numbers 0..n-1 (size < n), sorted: at least 100 random runs of up to SAMPLE_RUN
    consecutive rows. Runs, not scattered rows: each row read off the memory-mapped corpus makes its
    page, and the kernel's read-ahead around it, resident: scattered rows of a corpus of millions of pairs
    make nearly all of it resident, a hundred runs a small part of it (benchmarks/corpus_scale.py measures it)."""
    rng = np.random.default_rng(seed)
    run = max(1, min(SAMPLE_RUN, size // 100))
    runs = -(-size // run)
    run = min(run, n // runs)
    if runs * run < size:  # a sample nearly as large as the corpus: scattered rows
        return np.sort(rng.choice(n, size, replace=False))
    starts = np.sort(rng.choice(n // run, runs, replace=False)) * run
    return (starts[:, None] + np.arange(run)).ravel()[:size]


def _column(ds: datasets.Dataset, name: str) -> Iterator[str]:
    """One text column, streamed in batches off the Arrow table."""
    for batch in ds.select_columns([name]).iter(batch_size=10_000):
        yield from batch[name]
