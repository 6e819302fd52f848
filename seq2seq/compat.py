"""Old import paths, kept working: modules that moved when the package was grouped into ``data/``,
``model/``, ``inference/`` and ``training/``.

Users' own configs and saved run folders (``.hydra/config.yaml``) name classes by their old paths, e.g.
``_target_: seq2seq.callbacks.TrainingCurves``. ``import seq2seq`` installs a finder that answers an old
module name with the new module itself (the same object), imported only when asked for, so the alias
costs nothing and never imports Lightning on its own. CHANGELOG.md lists every move.
"""
import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType

MOVED_MODULES = {
    "seq2seq.callbacks": "seq2seq.training.callbacks",
    "seq2seq.data.datamodule": "seq2seq.training.datamodule",
    "seq2seq.ensemble": "seq2seq.inference.ensemble",
    "seq2seq.files": "seq2seq.atomic_files",
    "seq2seq.lock": "seq2seq.training.lock",
    "seq2seq.loss": "seq2seq.training.loss",
    "seq2seq.module": "seq2seq.training.lightning_module",
    "seq2seq.numerics": "seq2seq.inference.numerics",
    "seq2seq.precision": "seq2seq.config",
    "seq2seq.schedules": "seq2seq.training.schedules",
    "seq2seq.search": "seq2seq.inference.search",
    "seq2seq.service": "seq2seq.inference.service",
    "seq2seq.sweep": "seq2seq.training.sweep",
    "seq2seq.train": "seq2seq.training.train",
    "seq2seq.translator": "seq2seq.inference.translator",
    "seq2seq.validate": "seq2seq.training.validate",
}
# Names that a package's __init__ used to export: (package, name) -> module that defines it now.
MOVED_NAMES = {("seq2seq.data", "TranslationDataModule"): "seq2seq.training.datamodule"}


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED_MODULES else None

    def create_module(self, spec) -> ModuleType:
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module: ModuleType) -> None:
        pass  # the new module is already executed


def install() -> None:
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.append(_OldPaths())


def moved_name(package: str, name: str) -> object:
    """A package's ``__getattr__``: the object an old ``package.name`` path meant."""
    if (package, name) not in MOVED_NAMES:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return getattr(importlib.import_module(MOVED_NAMES[package, name]), name)
