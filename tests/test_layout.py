"""The package's layout as a contract: the inference path never imports Lightning, no module imports from
a sub-package above its own level, and the old import paths still resolve to the moved objects."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.utils import get_class, get_method

from conftest import ROOT
from seq2seq import compat

PACKAGE = ROOT / "seq2seq"
# A module may import from its own level and the ones before it, never from a later one.
LEVELS = {"config": 0, "atomic_files": 0, "evaluation": 0, "compat": 0, "data": 1, "model": 1, "plots": 1,
          "modelfile": 2, "report": 2, "cli": 3, "inference": 3, "training": 4, "commands": 5}


def test_importing_the_inference_path_never_imports_lightning() -> None:
    code = ("import sys; from seq2seq import Translator; import seq2seq.inference.service, seq2seq.cli, seq2seq.report; "
            "print(sorted(m for m in sys.modules if m.split('.')[0].startswith(('lightning', 'pytorch_lightning'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n.startswith("seq2seq.")}


def _level(dotted: str) -> int | None:
    return LEVELS.get(dotted.split(".")[1])


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_later_level(path: Path) -> None:
    part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if part == "__init__":
        return  # the package's front door re-exports the Translator
    own = LEVELS[part]
    later = sorted(name for name in _imports(path) if (_level(name) or 0) > own)
    assert not later, f"{path.relative_to(ROOT)} (level {own}) imports {later}"


def test_every_module_has_a_level() -> None:
    tops = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert tops - {"__init__"} == set(LEVELS)


@pytest.mark.parametrize("old", sorted(compat.MOVED_MODULES))
def test_old_module_paths_are_the_moved_modules(old: str) -> None:
    import importlib

    assert importlib.import_module(old) is importlib.import_module(compat.MOVED_MODULES[old])


def test_old_target_paths_of_saved_configs_resolve() -> None:
    """_target_ strings as run folders written before the move hold them."""
    from seq2seq.training.callbacks import AtomicCheckpointIO, HistoryCSVLogger, TrainingCurves
    from seq2seq.training.datamodule import TranslationDataModule
    from seq2seq.training.sweep import SweepReport

    assert get_class("seq2seq.data.TranslationDataModule") is TranslationDataModule
    assert get_class("seq2seq.callbacks.TrainingCurves") is TrainingCurves
    assert get_class("seq2seq.callbacks.AtomicCheckpointIO") is AtomicCheckpointIO
    assert get_class("seq2seq.callbacks.HistoryCSVLogger") is HistoryCSVLogger
    assert get_class("seq2seq.sweep.SweepReport") is SweepReport
    assert get_method("seq2seq.data.batching.batch_size").__module__ == "seq2seq.data.batching"
    with pytest.raises(AttributeError):
        import seq2seq.data

        seq2seq.data.NoSuchThing  # noqa: B018  (an unknown name stays an error)
