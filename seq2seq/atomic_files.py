"""Files that appear whole or not at all: every output is written to a temporary file beside its target,
synced, then renamed over it, so a process killed mid-write leaves the previous file (or none).

Temporary names carry the writer's pid (``.NAME.tmp<pid>``); ``remove_stale_temporaries`` deletes those
of processes that no longer exist, so a killed writer leaves nothing behind for long.
"""
import errno
import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

import torch

_TMP = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}  # no space, file too large (RLIMIT_FSIZE), quota


class RunError(ValueError):
    """A run cannot go on for a reason outside the code: its folder is in use, a disk is full, a rank is gone."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete `.NAME.tmp<pid>` files beside `path` whose writer process is gone; the paths removed."""
    removed = []
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        return removed
    for candidate in folder.glob(f".{path.name}.tmp*"):
        match = _TMP.match(candidate.name)
        if match and match["name"] == path.name and int(match["pid"]) != os.getpid() and not _pid_alive(int(match["pid"])):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


@contextmanager
def atomic_binary(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file handle whose contents replace `path` only when the block ends without error."""
    path = Path(path)
    if not path.parent.is_dir():
        raise RunError(f"{path}: cannot write it, folder {path.parent} does not exist")
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in _FULL:
            kept = "the previous file is kept" if path.exists() else "nothing was written"
            raise RunError(f"{path}: not written: {e.strerror} ({kept})") from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_text(path: str | Path) -> Iterator[TextIO]:
    """atomic_binary as UTF-8 text with LF line endings."""
    with atomic_binary(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
        yield text
        text.flush()
        text.detach()


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_text(path) as f:
        f.write(text)


class _Writes:
    """A binary file as torch.save writes to it, keeping the OSError of a failed write (torch's writer reports
    only a RuntimeError about the file position)."""

    def __init__(self, file: BinaryIO) -> None:
        self.file, self.error = file, None

    def write(self, data: bytes) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.file.flush()


def atomic_save(obj: object, path: str | Path) -> None:
    """torch.save, atomically; the folder is created if missing."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_binary(path) as f:
        sink = _Writes(f)
        try:
            torch.save(obj, sink)
        except RuntimeError:
            if sink.error is None:
                raise
            raise sink.error from None
