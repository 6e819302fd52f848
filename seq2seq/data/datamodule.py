"""The LightningDataModule: load the splits, train or reuse SentencePiece, batch by tokens."""
import logging
from pathlib import Path

import datasets
import lightning as L
from torch.utils.data import DataLoader

from seq2seq.config import ConfigError
from seq2seq.data.batching import ResumableLoader, TokenBatchSampler, collate
from seq2seq.data.sources import load_split
from seq2seq.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)
LOCAL_FORMATS = ("text", "tsv", "jsonl")


class TranslationDataModule(L.LightningDataModule):
    """Splits `train`, `val`, `test` of a parallel corpus as id sequences.

    source: {format, path, splits: {train, val, test}, columns?, name?}; `fallback` has the same keys
    and is used when a local `source.path` does not exist (e.g. the hub copy of a local corpus).
    Training keeps pairs whose both sides have 1..max_len pieces; val/test keep every sentence.
    """

    def __init__(self, src_lang: str, tgt_lang: str, source: dict, tokenizer: dict,
                 fallback: dict | None = None, max_tokens: int = 4096, eval_max_tokens: int = 8192,
                 max_len: int = 100, train_limit: int | None = None, eval_limit: int | None = None,
                 num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__()
        if max_tokens <= max_len + 1:
            raise ConfigError(f"data.max_tokens ({max_tokens}) must exceed data.max_len + 1 ({max_len + 1})")
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        self.source = self._choose(dict(source), fallback)
        self.tokenizer_cfg = dict(tokenizer)
        self.max_tokens, self.eval_max_tokens, self.max_len = max_tokens, eval_max_tokens, max_len
        self.train_limit, self.eval_limit = train_limit, eval_limit
        self.num_workers, self.seed = num_workers, seed
        self.tokenizer: Tokenizer | None = None
        self.splits: dict[str, datasets.Dataset] = {}

    @staticmethod
    def _choose(source: dict, fallback: dict | None) -> dict:
        if source["format"] in LOCAL_FORMATS and not Path(source["path"]).exists() and fallback:
            log.info("%s not found; using %s %s", source["path"], fallback["format"], fallback["path"])
            return dict(fallback)
        return source

    def load(self, split: str) -> datasets.Dataset:
        s = self.source
        ds = load_split(s["format"], s["path"], s["splits"][split], self.src_lang, self.tgt_lang,
                        s.get("columns"), s.get("name"))
        limit = self.train_limit if split == "train" else self.eval_limit
        if limit:
            ds = ds.select(range(min(limit, len(ds))))
        return ds

    def prepare_tokenizer(self, folder: Path) -> Tokenizer:
        """The run's tokenizer: loaded from `folder` if saved there (resume, DDP ranks), else trained."""
        self.tokenizer = Tokenizer.load(folder)
        if self.tokenizer is None:
            train = self.load("train")
            log.info("training SentencePiece on %d sentence pairs", len(train))
            self.tokenizer = Tokenizer.train(train["src"], train["tgt"], **self.tokenizer_cfg)
            self.tokenizer.save(folder)
        return self.tokenizer

    def setup(self, stage: str | None = None) -> None:
        assert self.tokenizer is not None, "call prepare_tokenizer() before setup()"
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"]}.get(stage, ["train", "val", "test"])
        for split in wanted:
            if split not in self.splits:
                self.splits[split] = self._encode(self.load(split), train=split == "train")

    def _encode(self, ds: datasets.Dataset, train: bool) -> datasets.Dataset:
        tok = self.tokenizer
        ds = ds.map(lambda b, idx: {"id": idx, "src_ids": tok.encode_src(b["src"]), "tgt_ids": tok.encode_tgt(b["tgt"])},
                    batched=True, with_indices=True)
        if train:
            ds = ds.filter(lambda b: [1 < len(s) <= self.max_len + 1 and 0 < len(t) <= self.max_len
                                      for s, t in zip(b["src_ids"], b["tgt_ids"])], batched=True)
        return ds

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.splits[split]
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = TokenBatchSampler([len(x) for x in ds["src_ids"]], [len(x) for x in ds["tgt_ids"]],
                                    self.max_tokens if shuffle else self.eval_max_tokens, shuffle,
                                    self.seed, rank, world)
        loader = ResumableLoader if shuffle else DataLoader  # a killed run resumes mid-epoch
        return loader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
