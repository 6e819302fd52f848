"""What the scripts share: one-line errors for bad input, atomic output files, input lines."""
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from seq2seq.config import ConfigError
from seq2seq.data.sources import DataError, iter_lines, open_text
from seq2seq.files import atomic_text
from seq2seq.modelfile import ModelFileError


def user_errors(main: Callable) -> Callable:
    """Bad input ends the script with `error: <what, where>` on stderr and exit status 2."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (ConfigError, DataError, ModelFileError, ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    return wrapper


def input_lines(path: str | None) -> Iterator[str]:
    """Lines of `path`, or of stdin when path is None or '-'."""
    if path in (None, "-"):
        yield from iter_lines(sys.stdin.buffer, "<stdin>")
        return
    with open_text(Path(path)) as f:
        yield from iter_lines(f, path)


@contextmanager
def output_file(path: str | None) -> Iterator[TextIO]:
    """stdout, or a file that appears under its name only once it is complete."""
    if path in (None, "-"):
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_text(path) as f:
        yield f
