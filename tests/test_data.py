"""Corpus readers, their errors, the tokenizer, token-budget batching and the data module."""
import gzip
import json
import re
import threading
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import MULTI30K, compose_config
from seq2seq.data import DataError, Tokenizer
from seq2seq.data.batching import TokenBatchSampler, collate
from seq2seq.data.sources import load_split as load_split_into
from seq2seq.data.sources import read_lines
from seq2seq.data.tokenizer import BOS, EOS, PAD, UNK
from seq2seq.training.datamodule import TranslationDataModule

PAIRS = [("A dog runs.", "Ein Hund läuft."), ("", ""), ("Two men, one car.", "Zwei Männer, ein Auto.")]
SPLITS = {"train": "train", "val": "validation", "test": "test"}


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path_factory, monkeypatch) -> None:
    """load_dataset caches what it reads; keep that cache out of the home directory (and the data folders)."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf_cache"))


def load_split(format: str, path: str, split: str, src_lang: str, tgt_lang: str, **kwargs) -> datasets.Dataset:
    """load_split with its Arrow copies cached beside (not inside) the data folder."""
    return load_split_into(format, path, split, src_lang, tgt_lang, Path(path).parent / "cache", **kwargs)


def datamodule(cache: Path, **settings) -> TranslationDataModule:
    """The DataModule of conf/data/multi30k.yaml with `settings` replacing its keys (tokenizer: some of its keys)."""
    data = compose_config("train", []).data
    cfg = {k: data[k] for k in data}  # resolved
    cfg = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in cfg.items()}
    del cfg["_target_"]
    tokenizer = {**cfg.pop("tokenizer"), **settings.pop("tokenizer", {})}
    return TranslationDataModule(**{**cfg, "tokenizer": tokenizer, "cache_dir": str(cache), **settings})


def write_text(path: Path, lines: list[str], newline: str = "\n") -> None:
    data = "".join(line + newline for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def pairs_of(ds: datasets.Dataset) -> list[tuple[str, str]]:
    assert ds.column_names == ["src", "tgt"]
    return list(zip(ds["src"], ds["tgt"], strict=True))


@pytest.mark.parametrize("suffix, newline", [("", "\n"), (".gz", "\n"), ("", "\r\n"), (".gz", "\r\n")])
def test_text_reader(tmp_path: Path, suffix: str, newline: str) -> None:
    write_text(tmp_path / f"train.en{suffix}", [s for s, _ in PAIRS], newline)
    write_text(tmp_path / f"train.de{suffix}", [t for _, t in PAIRS], newline)
    assert pairs_of(load_split("text", str(tmp_path), "train", "en", "de")) == PAIRS


def test_text_reader_prefers_the_plain_file_and_keeps_a_last_line_without_newline(tmp_path: Path) -> None:
    write_text(tmp_path / "train.en.gz", ["old"])
    (tmp_path / "train.en").write_bytes(b"one\r\ntwo")
    write_text(tmp_path / "train.de", ["eins", "zwei"])
    assert pairs_of(load_split("text", str(tmp_path), "train", "en", "de")) == [("one", "eins"), ("two", "zwei")]


def test_tsv_reader_takes_quotes_and_na_literally(tmp_path: Path) -> None:
    rows = [*PAIRS[:1], ('He said "hi".', 'Er sagte "hallo".'), ("NA", "null")]
    write_text(tmp_path / "train.tsv", [f"{s}\t{t}" for s, t in rows])
    assert pairs_of(load_split("tsv", str(tmp_path), "train", "en", "de")) == rows


def test_jsonl_reader_with_columns(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "test.jsonl", [{"english": s, "german": t, "id": i} for i, (s, t) in enumerate(PAIRS)])
    ds = load_split("jsonl", str(tmp_path), "test", "en", "de", columns={"src": "english", "tgt": "german"})
    assert pairs_of(ds) == PAIRS
    with pytest.raises(DataError, match=r"test\.jsonl:1: no column \['en', 'de'\]"):
        load_split("jsonl", str(tmp_path), "test", "en", "de")


def test_hub_reader_on_a_local_dataset_folder(tmp_path: Path) -> None:
    """load_dataset(folder) takes the same path as a hub id: splits from the file names."""
    write_jsonl(tmp_path / "train.jsonl", [{"en": "x", "de": "y"}] * 3)
    write_jsonl(tmp_path / "validation.jsonl", [{"en": s, "de": t} for s, t in PAIRS])
    ds = load_split("hub", str(tmp_path), "validation", "en", "de", columns={"src": "en", "tgt": "de"})
    assert pairs_of(ds) == PAIRS
    with pytest.raises(DataError, match=r"\[validation\]: no column \['fr'\]"):
        load_split("hub", str(tmp_path), "validation", "fr", "de")


def test_parallel_files_of_different_length(tmp_path: Path) -> None:
    write_text(tmp_path / "train.en", ["a", "b", "c"])
    write_text(tmp_path / "train.de.gz", ["a", "b"])
    with pytest.raises(DataError) as error:
        load_split("text", str(tmp_path), "train", "en", "de")
    message = str(error.value)
    assert f"{tmp_path / 'train.en'} has 3 lines" in message and f"{tmp_path / 'train.de.gz'} has 2" in message


@pytest.mark.parametrize("format", ["text", "tsv", "jsonl"])
def test_missing_and_empty_files(tmp_path: Path, format: str) -> None:
    with pytest.raises(DataError, match=rf"{re.escape(str(tmp_path / 'dev'))}.*: file not found"):
        load_split(format, str(tmp_path), "dev", "en", "de")
    for name in ("dev.en", "dev.de", "dev.tsv", "dev.jsonl"):
        (tmp_path / name).touch()
    with pytest.raises(DataError, match=rf"{re.escape(str(tmp_path / 'dev'))}.*: file is empty"):
        load_split(format, str(tmp_path), "dev", "en", "de")


def test_unknown_format_is_named() -> None:
    with pytest.raises(DataError, match="data.source.format.*'csv'"):
        load_split("csv", ".", "train", "en", "de")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_invalid_utf8_names_the_line(tmp_path: Path, suffix: str) -> None:
    data = b"fine\nauch gut\n" + b"caf\xe9 latin-1\n" + b"more\n"
    path = tmp_path / f"train.de{suffix}"
    path.write_bytes(gzip.compress(data) if suffix else data)
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:3: not valid UTF-8"):
        read_lines(path)


def test_fallback_is_used_only_when_the_local_source_is_missing(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", [{"en": s, "de": t} for s, t in PAIRS])
    fallback = {"format": "hub", "path": str(tmp_path), "splits": SPLITS, "columns": {"src": "en", "tgt": "de"}}
    missing = {"format": "text", "path": str(tmp_path / "nowhere"), "splits": SPLITS}
    dm = datamodule(tmp_path / "cache", source=missing, fallback=fallback)
    assert dm.source == fallback
    assert pairs_of(dm.load("train")) == PAIRS
    present = {"format": "text", "path": str(MULTI30K), "splits": SPLITS}
    assert datamodule(tmp_path / "cache", source=present, fallback=fallback).source == present


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str]]:
    """The first 2,000 Multi30k training pairs."""
    return read_lines(MULTI30K / "train.en.gz")[:2000], read_lines(MULTI30K / "train.de.gz")[:2000]


@pytest.fixture(scope="module")
def joint(corpus) -> Tokenizer:
    return Tokenizer.train(*corpus, vocab_size=600)


@pytest.fixture(scope="module")
def separate(corpus) -> Tokenizer:
    return Tokenizer.train(*corpus, vocab_size=500, joint=False)


def test_byte_fallback_round_trips_unseen_characters(joint: Tokenizer) -> None:
    lines = ["Ein Hund 🐕 läuft über die Straße.", "日本語のテキスト", "emoji only: 🦜🎉", "Ça coûte 5 €."]
    ids = joint.encode_tgt(lines)
    assert all(UNK not in row for row in ids)
    assert joint.decode_tgt(ids) == lines
    assert any(piece.startswith("<0x") for piece in joint.tgt_pieces(ids[1]))  # bytes, not pieces
    src = joint.encode_src(lines + [""])
    assert all(row[-1] == EOS and UNK not in row for row in src) and src[-1] == [EOS]


def test_joint_and_separate_vocabularies(joint: Tokenizer, separate: Tokenizer) -> None:
    assert joint.joint and joint.src_vocab_size == joint.tgt_vocab_size == 600
    assert not separate.joint and separate.src_vocab_size == separate.tgt_vocab_size == 500
    assert separate.src_model != separate.tgt_model
    word = "Männer"  # a whole piece in German, not in English
    assert len(separate.tgt.encode(word)) < len(separate.src.encode(word))
    for tok in (joint, separate):
        assert [tok.src.id_to_piece(i) for i in (PAD, UNK, BOS, EOS)] == ["<pad>", "<unk>", "<s>", "</s>"]


@pytest.mark.parametrize("joint_vocab", [True, False])
def test_tokenizer_state_and_folder_round_trip(corpus, joint: Tokenizer, separate: Tokenizer, tmp_path: Path,
                                              joint_vocab: bool) -> None:
    tok = joint if joint_vocab else separate
    assert Tokenizer.load(tmp_path) is None
    tok.save(tmp_path)
    lines = corpus[0][:50]
    for copy in (Tokenizer.from_state(tok.state()), Tokenizer.load(tmp_path)):
        assert copy.joint == tok.joint and copy.state() == tok.state()
        assert copy.encode_src(lines) == tok.encode_src(lines) and copy.encode_tgt(lines) == tok.encode_tgt(lines)
    assert (tmp_path / "spm.tgt.model").exists() != joint_vocab


def lengths(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(1, 60, n), rng.integers(1, 60, n)


def cost(batch: list[int], src: np.ndarray, tgt: np.ndarray) -> int:
    """Padded positions of a batch: sentences x the longest side (target + EOS/BOS)."""
    return len(batch) * max(max(src[batch]), max(tgt[batch]) + 1)


def test_training_batches_cover_every_sentence_once_within_the_budget() -> None:
    src, tgt = lengths()
    sampler = TokenBatchSampler(src, tgt, max_tokens=300, shuffle=True, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(src)))
        assert all(cost(b, src, tgt) <= 300 for b in batches)
        assert len(sampler) == len(batches) and np.mean([cost(b, src, tgt) for b in batches]) > 200


def test_batch_order_is_fixed_by_seed_and_epoch() -> None:
    src, tgt = lengths()
    def batches(seed: int, epoch: int) -> list[list[int]]:
        sampler = TokenBatchSampler(src, tgt, max_tokens=300, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return sampler.batches()
    assert batches(1, 0) == batches(1, 0) and batches(1, 5) == batches(1, 5)
    assert batches(1, 0) != batches(1, 1) and batches(1, 0) != batches(2, 0)


@pytest.mark.parametrize("n", [600, 37])
def test_two_ranks_share_the_training_batches(n: int) -> None:
    src, tgt = lengths(n)
    ranks = [TokenBatchSampler(src, tgt, max_tokens=300, shuffle=True, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for epoch in (0, 1):
        for s in ranks:
            s.set_epoch(epoch)
        mine = [s.batches() for s in ranks]
        assert len(mine[0]) == len(mine[1]) > 0
        assert {i for part in mine for b in part for i in b} == set(range(n))
        alone = TokenBatchSampler(src, tgt, max_tokens=300, shuffle=True, seed=3)
        alone.set_epoch(epoch)
        assert len(alone) <= len(mine[0]) + len(mine[1]) <= len(alone) + 1


@pytest.mark.parametrize("world_size", [1, 2])
def test_evaluation_batches_keep_every_sentence_once(world_size: int) -> None:
    src, tgt = lengths(101)
    parts = [TokenBatchSampler(src, tgt, max_tokens=500, shuffle=False, rank=r, world_size=world_size).batches()
             for r in range(world_size)]
    ids = [i for part in parts for b in part for i in b]
    assert sorted(ids) == list(range(101))
    assert all(cost(b, src, tgt) <= 500 for part in parts for b in part)


def test_collate_shifts_the_target() -> None:
    batch = collate([{"id": 4, "src_ids": [5, 6, EOS], "tgt_ids": [7], "tgt": "a"},
                     {"id": 9, "src_ids": [EOS], "tgt_ids": [8, 9, 10], "tgt": "b"}])
    assert batch["src"].tolist() == [[5, 6, EOS], [EOS, PAD, PAD]] and batch["src_lens"].tolist() == [3, 1]
    assert batch["tgt_in"].tolist() == [[BOS, 7, PAD, PAD], [BOS, 8, 9, 10]]
    assert batch["tgt_out"].tolist() == [[7, EOS, PAD, PAD], [8, 9, 10, EOS]]
    assert batch["ids"].tolist() == [4, 9] and batch["refs"] == ["a", "b"]
    assert batch["src"].dtype == batch["tgt_in"].dtype == torch.long


def test_length_filter_applies_to_training_only(tmp_path: Path) -> None:
    max_len = 12
    splits = {"train": "train", "val": "val", "test": "test_2016_flickr"}
    source = {"format": "text", "path": str(MULTI30K), "splits": splits}
    dm = datamodule(tmp_path / "cache", source=source, tokenizer={"vocab_size": 400, "sample_size": 1000},
                    max_tokens=200, max_len=max_len, train_limit=400, eval_limit=150)
    tok = dm.prepare_tokenizer(tmp_path / "tokenizer")
    assert Tokenizer.load(tmp_path / "tokenizer").state() == tok.state()
    dm.setup("fit")
    dm.setup("test")
    raw = dm.load("train")
    src_ids, tgt_ids = tok.encode_src(list(raw["src"])), tok.encode_tgt(list(raw["tgt"]))
    kept = [i for i, (s, t) in enumerate(zip(src_ids, tgt_ids)) if 1 < len(s) <= max_len + 1 and 0 < len(t) <= max_len]
    assert 0 < len(kept) < 400 and list(dm.splits["train"]["id"]) == kept
    for split in ("val", "test"):
        ds = dm.splits[split]
        assert list(ds["id"]) == list(range(150)) and list(ds["tgt"]) == list(dm.load(split)["tgt"])
        assert max(len(s) for s in ds["src_ids"]) > max_len + 1 or max(len(t) for t in ds["tgt_ids"]) > max_len
    val = [i for b in dm.val_dataloader() for i in b["ids"].tolist()]
    assert sorted(val) == list(range(150))
    train = [i for b in dm.train_dataloader() for i in b["ids"].tolist()]
    assert sorted(train) == kept


# --- malformed lines ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("format, lines, where, what", [
    ("tsv", ["a\tb", "c\td", "no tab here", "e\tf"], 3, "expected source TAB target, found 1 tab-separated field"),
    ("tsv", ["a\tb", "one\ttwo\tthree"], 2, "expected source TAB target, found 3 tab-separated fields"),
    ("jsonl", ['{"en": "a", "de": "b"}', '{"en": "c", "de": '], 2, "not valid JSON"),
    ("jsonl", ['{"en": "a", "de": "b"}', "", '["a", "b"]'], 3, "expected a JSON object, found list"),
    ("jsonl", ['{"en": "a", "de": "b"}', '{"en": "c"}'], 2, r"no column \['de'\]"),
    ("jsonl", ['{"en": "a", "de": null}'], 1, "'de' is null, not a string"),
])
def test_malformed_lines_are_named_by_file_and_line(tmp_path: Path, format: str, lines: list[str], where: int,
                                                    what: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_text(data / f"train.{format}", lines)
    with pytest.raises(DataError, match=rf"^{re.escape(str(data / f'train.{format}'))}:{where}: {what}"):
        load_split(format, str(data), "train", "en", "de")
    assert not list((tmp_path / "cache").glob("corpus/*/*.arrow"))  # nothing half-read is kept


def test_a_malformed_line_ends_training_with_one_error_line(tmp_path: Path, capfd) -> None:
    from seq2seq.cli import user_errors
    from seq2seq.training.train import train

    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "val", "test"):
        write_text(data / f"{split}.tsv", ["A dog.\tEin Hund."] * 5 + (["broken line"] if split == "train" else []))
    cfg = compose_config("train", ["data.source.format=tsv", f"data.source.path={data}", "data.fallback=null",
                                   "data.source.splits={train: train, val: val, test: test}"], tmp_path / "run")
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit:
        user_errors(train)(cfg)
    err = capfd.readouterr().err.strip().splitlines()
    assert exit.value.code == 2 and err == [f"error: {data / 'train.tsv'}:6: expected source TAB target, "
                                            f"found 1 tab-separated field"]


# --- the cache: one preparation, reused ---------------------------------------------------------------------

@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """600/50/50 Multi30k pairs as a text corpus folder."""
    folder = tmp_path / "small"
    folder.mkdir()
    for split, n in (("train", 600), ("val", 50), ("test", 50)):
        for lang in ("en", "de"):
            src = "train" if split == "train" else "val"
            write_text(folder / f"{split}.{lang}", read_lines(MULTI30K / f"{src}.{lang}.gz")[:n])
    return folder


def small(cache: Path, corpus: Path, **settings) -> TranslationDataModule:
    source = {"format": "text", "path": str(corpus), "splits": {"train": "train", "val": "val", "test": "test"}}
    return datamodule(cache, source=source, tokenizer={"vocab_size": 400, "sample_size": 10_000}, max_tokens=300,
                      **settings)


@pytest.fixture
def counted(monkeypatch) -> dict[str, int]:
    """Counts of SentencePiece trainings and datasets.map calls (tokenizations) from here on."""
    counts = {"train": 0, "map": 0}
    real_train, real_map = Tokenizer.train.__func__, datasets.Dataset.map

    def train(cls, *args, **kwargs):
        counts["train"] += 1
        return real_train(cls, *args, **kwargs)

    def map(self, *args, **kwargs):
        counts["map"] += 1
        return real_map(self, *args, **kwargs)

    monkeypatch.setattr(Tokenizer, "train", classmethod(train))
    monkeypatch.setattr(datasets.Dataset, "map", map)
    return counts


def prepared(dm: TranslationDataModule, run_dir: Path) -> TranslationDataModule:
    """What a run does: tokenizer into its folder, prepare_data (rank 0), setup (every rank)."""
    dm.prepare_tokenizer(run_dir / "tokenizer")
    dm.prepare_data()
    dm.setup()
    return dm


def test_a_second_run_reuses_the_cache_and_tokenizes_nothing(tmp_path: Path, small_corpus: Path, counted) -> None:
    cache = tmp_path / "cache"
    first = prepared(small(cache, small_corpus), tmp_path / "run1")
    assert counted == {"train": 1, "map": 3}  # SentencePiece once, then train, val and test encoded
    files = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    second = prepared(small(cache, small_corpus), tmp_path / "run2")  # another run folder
    assert counted == {"train": 1, "map": 3}
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == files
    assert (tmp_path / "run2" / "tokenizer" / "spm.src.model").read_bytes() == first.tokenizer.src_model
    for split in ("train", "val", "test"):
        assert second.splits[split][:] == first.splits[split][:]
        assert all(np.array_equal(a, b) for a, b in zip(second.lengths[split], first.lengths[split]))
    assert second.splits["train"].column_names == ["id", "src_ids", "tgt_ids", "src_len", "tgt_len"]
    assert second.lengths["train"][0].tolist() == [len(s) for s in second.splits["train"]["src_ids"]]

    prepared(small(cache, small_corpus, max_len=20), tmp_path / "run3")  # a filter works on the cached ids
    assert counted == {"train": 1, "map": 3}
    prepared(small(cache, small_corpus, train_limit=300), tmp_path / "run4")  # other training pairs
    assert counted == {"train": 2, "map": 6}
    write_text(small_corpus / "val.de", read_lines(small_corpus / "val.de")[::-1])  # a changed file
    prepared(small(cache, small_corpus, train_limit=300), tmp_path / "run5")
    assert counted == {"train": 2, "map": 7}


def test_ranks_share_one_preparation(tmp_path: Path, small_corpus: Path, counted) -> None:
    """Lightning calls prepare_data on global rank 0 only; the other ranks' setup() memory-maps its files.
    Two preparations racing (two nodes, or two runs) build each entry once."""
    cache, folder = tmp_path / "cache", tmp_path / "run" / "tokenizer"
    rank0, rank1 = small(cache, small_corpus), small(cache, small_corpus)
    assert rank0.prepare_data_per_node is False
    prepared(rank0, tmp_path / "run")
    rank1.prepare_tokenizer(folder)  # as train.shared_tokenizer does once rank 0 saved it
    rank1.setup("fit")
    assert counted == {"train": 1, "map": 3}
    for split in ("train", "val"):
        assert [f["filename"] for f in rank1.splits[split].cache_files] == \
               [f["filename"] for f in rank0.splits[split].cache_files]
        assert all(f["filename"].startswith(str(cache)) for f in rank1.splits[split].cache_files)

    racing = [small(tmp_path / "cache2", small_corpus) for _ in range(2)]
    threads = [threading.Thread(target=prepared, args=(dm, tmp_path / f"race{i}")) for i, dm in enumerate(racing)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert counted == {"train": 2, "map": 6}
    assert racing[0].splits["train"][:] == racing[1].splits["train"][:]


def test_sentencepiece_trains_on_a_streamed_sample(tmp_path: Path, small_corpus: Path, monkeypatch) -> None:
    seen = {}
    real_train = Tokenizer.train.__func__

    def train(cls, src, tgt, **kwargs):
        seen.update(src_is_list=isinstance(src, list), tgt_is_list=isinstance(tgt, list))
        src, tgt = list(src), list(tgt)
        seen.update(src=src, tgt=tgt)
        return real_train(cls, src, tgt, **kwargs)

    monkeypatch.setattr(Tokenizer, "train", classmethod(train))
    dm = datamodule(tmp_path / "cache", source={"format": "text", "path": str(small_corpus), "splits": SPLITS},
                    tokenizer={"vocab_size": 400, "sample_size": 250})
    dm.prepare_tokenizer(tmp_path / "tokenizer")
    assert not seen["src_is_list"] and not seen["tgt_is_list"]  # streamed off the Arrow table
    en, de = read_lines(small_corpus / "train.en"), read_lines(small_corpus / "train.de")
    assert len(seen["src"]) == len(set(seen["src"])) == 250 and set(seen["src"]) < set(en)
    assert [de[en.index(s)] for s in seen["src"]] == seen["tgt"]  # aligned pairs, in corpus order
    every = datamodule(tmp_path / "cache", source={"format": "text", "path": str(small_corpus), "splits": SPLITS},
                       tokenizer={"vocab_size": 400, "sample_size": 600})
    every.prepare_tokenizer(tmp_path / "tokenizer_all")
    assert seen["src"] == en and seen["tgt"] == de  # no more pairs than the sample: all, in order


def test_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.tokenizer.sample_size"):
        datamodule(tmp_path, tokenizer={"sample_size": 0})
    with pytest.raises(ValueError, match="data.num_proc"):
        datamodule(tmp_path, num_proc=0)


# --- WMT-shaped hub datasets ----------------------------------------------------------------------------------

WMT = [{"translation": {"de": f"Satz {i} auf Deutsch.", "en": f"Sentence {i} in English."}} for i in range(40)]


def wmt_folder(folder: Path) -> Path:
    """A local copy of the hub's wmt/wmt14 layout: parquet files per config and split, configs in README.md."""
    for split, rows in (("train", WMT[:30]), ("validation", WMT[30:35]), ("test", WMT[35:])):
        (folder / "de-en").mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_list(rows).to_parquet(folder / "de-en" / f"{split}-00000-of-00001.parquet")
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: de-en\n  data_files:\n" + "".join(
        f"  - split: {s}\n    path: de-en/{s}-*\n" for s in ("train", "validation", "test")) + "---\n")
    return folder


def test_wmt14_recipe_reads_a_wmt_shaped_dataset(tmp_path: Path) -> None:
    folder = wmt_folder(tmp_path / "wmt14")
    cfg = compose_config("train", ["data=wmt14_en_de", f"data.source.path={folder}"], tmp_path / "run")
    assert cfg.data.source.name == "de-en" and cfg.data.src_lang == "en" and cfg.data.tgt_lang == "de"
    dm = instantiate(cfg.data)
    expected = {"train": WMT[:30], "val": WMT[30:35], "test": WMT[35:]}
    for split, rows in expected.items():
        assert pairs_of(dm.load(split)) == [(r["translation"]["en"], r["translation"]["de"]) for r in rows]
    dm = instantiate(cfg.data, tokenizer={"vocab_size": 300})
    prepared(dm, tmp_path / "run")
    assert list(dm.splits["test"]["tgt"]) == [r["translation"]["de"] for r in WMT[35:]]
    assert dm.tokenizer.decode_tgt(dm.splits["val"]["tgt_ids"]) == [r["translation"]["de"] for r in WMT[30:35]]


def test_hub_reader_finds_a_nested_translation_column_and_save_to_disk_folders(tmp_path: Path) -> None:
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(WMT[:10]),
                               "validation": datasets.Dataset.from_list(WMT[10:12])})
    dd.save_to_disk(str(tmp_path / "saved"))
    ds = load_split("hub", str(tmp_path / "saved"), "validation", "de", "en")  # no columns: translation.{de,en}
    assert pairs_of(ds) == [(r["translation"]["de"], r["translation"]["en"]) for r in WMT[10:12]]
    ds = load_split("hub", str(tmp_path / "saved"), "train", "en", "de",
                    columns={"src": "translation.en", "tgt": "translation.de"})
    assert pairs_of(ds)[3] == (WMT[3]["translation"]["en"], WMT[3]["translation"]["de"])
    with pytest.raises(DataError, match=r"split 'dev'"):
        load_split("hub", str(tmp_path / "saved"), "dev", "en", "de")
    with pytest.raises(DataError, match=r"no column \['translation.fr'\]"):
        load_split("hub", str(tmp_path / "saved"), "train", "en", "fr",
                   columns={"src": "translation.en", "tgt": "translation.fr"})


@pytest.mark.parametrize("n, size", [(4_500_000, 100_000), (450_000, 100_000), (30_000, 29_999), (1_000, 250),
                                     (101, 100), (10, 9)])
def test_tokenizer_sample_is_random_runs_of_rows(n: int, size: int) -> None:
    """The SentencePiece sample: `size` distinct rows, sorted; from a corpus twice its size or more, in many
    separate runs (100 drawn, some adjacent) spread over the whole corpus."""
    from seq2seq.training.datamodule import sample_rows

    rows = sample_rows(n, size)
    assert len(rows) == size == len(set(rows.tolist())) and rows.min() >= 0 and rows.max() < n
    assert (np.diff(rows) > 0).all()
    if size <= n // 2:
        runs = 1 + int((np.diff(rows) > 1).sum())
        assert runs >= 50, runs
        assert rows.max() - rows.min() > n // 2  # not the corpus's beginning
