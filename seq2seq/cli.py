"""What the scripts share: one-line errors for bad input and settings, tidy logs, atomic output files,
input lines.

Our own input and settings errors (ConfigError, DataError, ModelFileError, RunError) end a script with
one `error: ...` line on stderr and exit status 2; any other exception is a bug and keeps its traceback.
"""
import functools
import json
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from seq2seq.atomic_files import RunError, atomic_text
from seq2seq.config import ConfigError
from seq2seq.data.sources import DataError, iter_lines, open_text
from seq2seq.inference.onnx_runtime import OnnxFolderError
from seq2seq.modelfile import ModelFileError

USER_ERRORS = (ConfigError, DataError, ModelFileError, OnnxFolderError, RunError)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def user_errors(main: Callable) -> Callable:
    """Bad input ends the script with `error: <what, where>` on stderr and exit status 2."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as e:
            fail(" ".join(str(e).split("\n")))
    return wrapper


def run_command(command: str, cfg: object) -> object:
    """A script's work: the composed config checked as its typed dataclass (seq2seq/config.py), then the
    command (a dotted path, imported here so that a script starts without importing it) called with it;
    our own errors end the script with one line."""
    import importlib

    from omegaconf import OmegaConf

    module, name = command.rsplit(".", 1)
    return user_errors(lambda: getattr(importlib.import_module(module), name)(OmegaConf.to_object(cfg)))()


def check_command_line(config_name: str, argv: list[str] | None = None) -> None:
    """Compose the config the way the script's @hydra.main will, before it does: an unknown key, a value of
    the wrong type or a missing required setting ends the script with one `error:` line and exit status 2
    (Hydra itself would print several lines and exit 1). Multirun and Hydra's own flags are left to Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    args = sys.argv[1:] if argv is None else argv
    if any(a.startswith("-") for a in args):  # -m, --cfg, --help, ...: Hydra's business
        return
    conf = Path(__file__).resolve().parents[1] / "conf"
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=args)
    except (HydraException, OmegaConfBaseException) as e:
        fail(_one_line(e))
    missing = _missing(OmegaConf.to_container(cfg, resolve=False))
    if missing:
        fail(f"missing required setting(s): {', '.join(f'{k}=...' for k in missing)}")


def _missing(tree: object, prefix: str = "") -> list[str]:
    """Keys whose value is Hydra's '???' (required, not given), without resolving interpolations."""
    if isinstance(tree, dict):
        return [k for key, value in tree.items() for k in _missing(value, f"{prefix}{key}.")]
    return [prefix.rstrip(".")] if tree == "???" else []


def _one_line(e: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages, and their causes, as one line."""
    parts, seen = [], e
    while seen is not None:
        lines = [line.strip() for line in str(seen).splitlines() if line.strip()]
        parts += [line for line in lines if not line.startswith(("full_key:", "object_type", "reference_type"))]
        seen = seen.__cause__
    return "; ".join(dict.fromkeys(parts))


def tidy_logging() -> None:
    """One copy of each log line, and no third-party noise: Lightning's own console handler is dropped so
    its records reach the handlers Hydra set up (console and the run's log file) once; Lightning's
    advertising tips and two known harmless warnings are filtered out.

    Imported before logging was set up (by a script that imports Lightning at its top), lightning.fabric
    and lightning.pytorch keep their records to their own console handlers (propagate=False): once the root
    logger has handlers, they are made to propagate to them, as when imported after."""
    logging.getLogger("lightning").handlers.clear()
    if logging.getLogger().handlers:
        for name in ("lightning.fabric", "lightning.pytorch"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: not str(r.msg).startswith("💡 Tip"))
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def input_lines(path: str | None) -> Iterator[str]:
    """Lines of `path`, or of stdin when path is None or '-'."""
    if path in (None, "-"):
        yield from iter_lines(sys.stdin.buffer, "<stdin>")
        return
    with open_text(Path(path)) as f:
        yield from iter_lines(f, path)


def input_records(path: str | None, input_format: str = "text") -> Iterator[tuple[str, str | None]]:
    """(text, prefix) of each input line: a text line has no prefix; input_format="jsonl" reads one
    {"text": ..., "prefix": ...} object a line (prefix optional; a blank line is a blank text)."""
    where = "<stdin>" if path in (None, "-") else path
    for number, line in enumerate(input_lines(path), 1):
        yield (line, None) if input_format == "text" or not line.strip() else json_record(line, f"{where}:{number}")


def json_record(line: str, where: str) -> tuple[str, str | None]:
    """One input_format=jsonl line -> (text, prefix | None); a DataError names `where` (FILE:LINE)."""
    wanted = 'input_format=jsonl wants one {"text": "...", "prefix": "..."} object a line (prefix optional)'
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: not JSON ({e.msg} at column {e.colno}): {wanted}") from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise DataError(f"{where}: no \"text\" string: {wanted}")
    unknown = sorted(set(record) - {"text", "prefix"})
    if unknown:
        raise DataError(f"{where}: unknown key(s) {unknown}: {wanted}")
    prefix = record.get("prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise DataError(f"{where}: \"prefix\" must be a string or null, got {json.dumps(prefix)}")
    return record["text"], prefix


@contextmanager
def output_file(path: str | None) -> Iterator[TextIO]:
    """stdout, or a file that appears under its name only once it is complete."""
    if path in (None, "-"):
        yield sys.stdout
        sys.stdout.flush()
        return
    with atomic_text(path) as f:
        yield f
