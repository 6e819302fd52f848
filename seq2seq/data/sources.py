"""Parallel corpora from plain-text files, TSV, JSON lines or a Hugging Face hub dataset.

Every reader returns a memory-mapped ``datasets.Dataset`` with the columns ``src`` and ``tgt``; no
reader holds the corpus in Python objects.
  text   {path}/{split}.{lang} or {split}.{lang}.gz, one sentence a line, line i aligned with line i
  tsv    {path}/{split}.tsv: source TAB target, no header, no quoting
  jsonl  {path}/{split}.jsonl: one object a line, keys from `columns`
  hub    datasets.load_dataset(path, name, split=split): a hub id or a local dataset folder (data files,
         or a folder written by save_to_disk); `columns` may name nested fields ("translation.en"), and
         a WMT-shaped `translation: {src_lang, tgt_lang}` column is found without them
Local files are read once, line by line, into an Arrow file under `cache_dir` named after the files'
paths, sizes and modification times; later reads memory-map it. A malformed line ends the read with
a DataError naming FILE:LINE.
"""
import gzip
import json
from collections.abc import Iterable, Iterator
from itertools import zip_longest
from pathlib import Path
from typing import BinaryIO

import datasets
import pyarrow as pa

from seq2seq.data.cache import build_once, digest, file_identity

datasets.disable_progress_bars()

CHUNK = 10_000  # rows per Arrow record batch written
SCHEMA = pa.schema({"src": pa.string(), "tgt": pa.string()})


class DataError(ValueError):
    """A bad input file, reported with its path (and line)."""


def iter_lines(stream: Iterable[bytes], name: str) -> Iterator[str]:
    """Decoded lines of a byte stream, line endings (LF or CRLF) removed; bad UTF-8 names the line."""
    for number, raw in enumerate(stream, 1):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DataError(f"{name}:{number}: not valid UTF-8 ({e.reason} at byte {e.start})") from None


def open_text(path: Path) -> BinaryIO:
    """A UTF-8 text file (or .gz) opened for iter_lines; missing or empty files are errors."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_lines(path: Path) -> list[str]:
    """All lines of a (small) text file."""
    with open_text(path) as f:
        return list(iter_lines(f, str(path)))


def _text_file(folder: Path, split: str, lang: str) -> Path:
    plain = folder / f"{split}.{lang}"
    return plain if plain.exists() or not plain.with_name(plain.name + ".gz").exists() else plain.with_name(plain.name + ".gz")


def _text_pairs(src_file: Path, tgt_file: Path) -> Iterator[tuple[str, str]]:
    with open_text(src_file) as s, open_text(tgt_file) as t:
        src, tgt = iter_lines(s, str(src_file)), iter_lines(t, str(tgt_file))
        for n, (a, b) in enumerate(zip_longest(src, tgt), 1):
            if a is None or b is None:
                rest = 1 + sum(1 for _ in (tgt if a is None else src))
                counts = (n - 1, n - 1 + rest) if a is None else (n - 1 + rest, n - 1)
                raise DataError(f"parallel files differ in length: {src_file} has {counts[0]} lines, "
                                f"{tgt_file} has {counts[1]}")
            yield a, b


def _tsv_pairs(file: Path) -> Iterator[tuple[str, str]]:
    with open_text(file) as f:
        for n, line in enumerate(iter_lines(f, str(file)), 1):
            fields = line.split("\t")
            if len(fields) != 2:
                raise DataError(f"{file}:{n}: expected source TAB target, found {len(fields)} "
                                f"tab-separated field{'s' * (len(fields) != 1)}")
            yield fields[0], fields[1]


def _jsonl_pairs(file: Path, columns: dict) -> Iterator[tuple[str, str]]:
    keys = (columns["src"], columns["tgt"])
    with open_text(file) as f:
        for n, line in enumerate(iter_lines(f, str(file)), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{file}:{n}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{file}:{n}: expected a JSON object, found {type(row).__name__}")
            missing = [k for k in keys if k not in row]
            if missing:
                raise DataError(f"{file}:{n}: no column {missing}; it has {list(row)} (set data.source.columns)")
            bad = [k for k in keys if not isinstance(row[k], str)]
            if bad:
                raise DataError(f"{file}:{n}: {bad[0]!r} is {json.dumps(row[bad[0]])[:40]}, not a string")
            yield row[keys[0]], row[keys[1]]


def _write_arrow(pairs: Iterator[tuple[str, str]], file: Path) -> None:
    """Pairs into an Arrow stream file (the format datasets memory-maps), CHUNK rows at a time."""
    with pa.OSFile(str(file), "wb") as sink, pa.ipc.new_stream(sink, SCHEMA) as writer:
        while chunk := [p for _, p in zip(range(CHUNK), pairs)]:
            src, tgt = zip(*chunk)
            writer.write_batch(pa.record_batch([pa.array(src, pa.string()), pa.array(tgt, pa.string())], schema=SCHEMA))
        if writer.stats.num_record_batches == 0:
            writer.write_batch(pa.record_batch([pa.array([], pa.string())] * 2, schema=SCHEMA))


def _local(files: list[Path], pairs: Iterator[tuple[str, str]], cache_dir: Path, tag: tuple) -> datasets.Dataset:
    """The Arrow copy of local `files` (read from `pairs` on first use), memory-mapped."""
    for f in files:
        open_text(f).close()  # missing and empty files are named before anything is written
    folder = cache_dir / "corpus" / digest(tag, [file_identity(f) for f in files])
    build_once(folder, lambda tmp: _write_arrow(pairs, tmp / "pairs.arrow"))
    return datasets.Dataset.from_file(str(folder / "pairs.arrow"))


def load_split(kind: str, path: str, split: str, src_lang: str, tgt_lang: str, cache_dir: Path,
               columns: dict | None = None, name: str | None = None) -> datasets.Dataset:
    """One split as a memory-mapped Dataset with the columns src and tgt."""
    folder = Path(path)
    if kind == "text":
        src_file, tgt_file = _text_file(folder, split, src_lang), _text_file(folder, split, tgt_lang)
        return _local([src_file, tgt_file], _text_pairs(src_file, tgt_file), cache_dir, ("text",))
    if kind == "tsv":
        file = folder / f"{split}.tsv"
        return _local([file], _tsv_pairs(file), cache_dir, ("tsv",))
    if kind == "jsonl":
        file = folder / f"{split}.jsonl"
        columns = columns or {"src": src_lang, "tgt": tgt_lang}
        return _local([file], _jsonl_pairs(file, columns), cache_dir, ("jsonl", columns["src"], columns["tgt"]))
    if kind == "hub":
        return _columns(_hub(path, name, split), columns, src_lang, tgt_lang, f"{path} [{split}]")
    raise DataError(f"data.source.format must be one of text, tsv, jsonl, hub; got {kind!r}")


def _hub(path: str, name: str | None, split: str) -> datasets.Dataset:
    """A hub dataset's split (cached by datasets as memory-mapped Arrow), or a save_to_disk folder's."""
    try:
        if (Path(path) / datasets.config.DATASETDICT_JSON_FILENAME).is_file():
            return datasets.load_from_disk(path)[split]
        if (Path(path) / datasets.config.DATASET_STATE_JSON_FILENAME).is_file():
            return datasets.load_from_disk(path)
        return datasets.load_dataset(path, name, split=split)
    except (OSError, ValueError, KeyError) as e:  # not found, offline, no such config or split
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"data.source.path {path!r} (name {name!r}, split {split!r}): {message}") from None


def _columns(ds: datasets.Dataset, columns: dict | None, src_lang: str, tgt_lang: str, where: str) -> datasets.Dataset:
    """src/tgt from the named (possibly nested, "a.b") columns; without names, the languages' columns
    or a WMT-shaped translation: {src_lang, tgt_lang} column."""
    if columns is None:
        nested = ds.features.get("translation")
        both = isinstance(nested, dict) and src_lang in nested and tgt_lang in nested
        columns = {"src": f"translation.{src_lang}", "tgt": f"translation.{tgt_lang}"} if both else \
            {"src": src_lang, "tgt": tgt_lang}
    if any("." in c for c in columns.values()):
        ds = ds.flatten()
    missing = [c for c in (columns["src"], columns["tgt"]) if c not in ds.column_names]
    if missing:
        raise DataError(f"{where}: no column {missing}; it has {ds.column_names} (set data.source.columns)")
    ds = ds.select_columns([columns["src"], columns["tgt"]])
    return ds.rename_columns({columns["src"]: "src", columns["tgt"]: "tgt"})


def cache_identity(ds: datasets.Dataset) -> list:
    """What identifies a loaded split's content: its Arrow files (path, size, mtime) and row count."""
    files = [file_identity(Path(f["filename"])) for f in ds.cache_files]
    return [files or ds._fingerprint, len(ds)]
