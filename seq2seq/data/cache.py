"""Prepared data (Arrow tables, SentencePiece models) under `data.cache_dir`, in folders named by a
digest of what they were made from, so that later runs, other run folders and every rank reuse them.

Each folder is built once: under a file lock (other ranks and concurrent runs wait for the process
building it) into a temporary folder that is renamed into place when complete, so a killed build
leaves nothing half-written. Under multi-node training the cache must be on a file system all nodes
share (as the run folder must).
"""
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def digest(*parts: object) -> str:
    """A short stable name for JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def file_identity(path: Path) -> list:
    """[absolute path, size, modification time in ns]: a file that changes gets a new identity."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def build_once(folder: Path, build: Callable[[Path], None]) -> bool:
    """Unless `folder` exists, run build(tmp) on an empty temporary folder and rename it to `folder`.
    Returns whether this call built it."""
    if folder.is_dir():
        return False
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if folder.is_dir():  # built by another process while this one waited
            return False
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            build(tmp)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True
