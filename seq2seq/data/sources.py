"""Parallel corpora from plain-text files, TSV, JSON lines or a Hugging Face hub dataset.

Every reader returns a ``datasets.Dataset`` with the columns ``src`` and ``tgt``.
  text   {path}/{split}.{lang} or {split}.{lang}.gz, one sentence a line, line i aligned with line i
  tsv    {path}/{split}.tsv: source TAB target, no header, no quoting
  jsonl  {path}/{split}.jsonl: one object a line, keys from `columns`
  hub    datasets.load_dataset(path, name, split=split): a hub id or a local dataset folder
"""
import csv
import gzip
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import datasets

datasets.disable_progress_bars()


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
    with open_text(path) as f:
        return list(iter_lines(f, str(path)))


def _text_file(folder: Path, split: str, lang: str) -> Path:
    plain = folder / f"{split}.{lang}"
    return plain if plain.exists() or not plain.with_name(plain.name + ".gz").exists() else plain.with_name(plain.name + ".gz")


def load_split(format: str, path: str, split: str, src_lang: str, tgt_lang: str,
               columns: dict | None = None, name: str | None = None) -> datasets.Dataset:
    columns = columns or {"src": src_lang, "tgt": tgt_lang}
    if format == "text":
        src_file, tgt_file = _text_file(Path(path), split, src_lang), _text_file(Path(path), split, tgt_lang)
        src, tgt = read_lines(src_file), read_lines(tgt_file)
        if len(src) != len(tgt):
            raise DataError(f"parallel files differ in length: {src_file} has {len(src)} lines, "
                            f"{tgt_file} has {len(tgt)}")
        return datasets.Dataset.from_dict({"src": src, "tgt": tgt})
    if format == "tsv":
        file = Path(path) / f"{split}.tsv"
        _check_file(file)
        ds = datasets.load_dataset("csv", data_files={split: str(file)}, split=split, delimiter="\t",
                                   quoting=csv.QUOTE_NONE, column_names=["src", "tgt"], keep_default_na=False)
    elif format == "jsonl":
        file = Path(path) / f"{split}.jsonl"
        _check_file(file)
        ds = _rename(datasets.load_dataset("json", data_files={split: str(file)}, split=split), columns, file)
    elif format == "hub":
        ds = _rename(datasets.load_dataset(path, name, split=split), columns, f"{path} [{split}]")
    else:
        raise DataError(f"data.source.format must be one of text, tsv, jsonl, hub; got {format!r}")
    return ds.select_columns(["src", "tgt"])


def _check_file(file: Path) -> None:
    open_text(file).close()


def _rename(ds: datasets.Dataset, columns: dict, where) -> datasets.Dataset:
    missing = [c for c in (columns["src"], columns["tgt"]) if c not in ds.column_names]
    if missing:
        raise DataError(f"{where}: no column {missing}; it has {ds.column_names} (set data.source.columns)")
    return ds.rename_columns({columns["src"]: "src", columns["tgt"]: "tgt"})
