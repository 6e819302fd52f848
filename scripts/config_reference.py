"""Write docs/configuration.md, the reference of every key a user sets, from the code that defines them:
the dataclasses of seq2seq/config.py (each field's default and its trailing comment) and the YAML groups
built by ``_target_`` (conf/data, trainer, callbacks, logger: each key's value and comment).

    python scripts/config_reference.py            # rewrite docs/configuration.md
    python scripts/config_reference.py --check    # exit 1 if it is out of date (tests/test_docs.py runs this)
"""
import dataclasses
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seq2seq import config  # noqa: E402

OUT = ROOT / "docs" / "configuration.md"
FIELD = re.compile(r"^    (\w+): [^=]+=(.*?)(?:\s+#\s*(.*))?$")
KEY = re.compile(r"^( *)([\w/-]+):(?:\s+([^#\s][^#]*?))?(?:\s+#\s*(.*))?\s*$")
HEADER = """# Configuration reference

Every key a user sets, with its default and meaning, generated from the code by
`python scripts/config_reference.py` (tests/test_docs.py fails when this page and the code differ).
Set any key on the command line (`python scripts/train.py model.hidden_size=512 trainer.max_time=00:01:00:00`)
or in a recipe under `conf/experiment/`. Typed groups (seq2seq/config.py) reject an unknown key or a
wrong type at start-up, and every range check names the key: `error: model.dropout must be a number in
[0, 1), got 1.5`.
"""


def field_comments(cls: type) -> dict[str, str]:
    """Each field's trailing comment in the class body (continued on following comment-only lines)."""
    comments, last = {}, None
    for line in textwrap.dedent(inspect.getsource(cls)).splitlines():
        match = FIELD.match(line)
        if match:
            last = match.group(1)
            comments[last] = match.group(3) or ""
        elif last and line.strip().startswith("#") and comments[last]:
            comments[last] += " " + line.strip().lstrip("# ")
        else:
            last = None
    return comments


def dataclass_rows(cls: type, prefix: str = "", own_only: bool = False) -> list[tuple[str, str, str]]:
    parent = {f.name for f in dataclasses.fields(cls.__mro__[1])} if own_only and dataclasses.is_dataclass(
        cls.__mro__[1]) else set()
    comments, rows = field_comments(cls), []
    for f in dataclasses.fields(cls):
        if f.name in parent or f.type is Any and not comments.get(f.name):
            continue  # inherited, or a group typed elsewhere
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = "required" if default == "???" else yaml_value(default)
        rows.append((prefix + f.name, shown, comments.get(f.name, "")))
    return rows


def yaml_value(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(yaml_value(v) for v in value) + "]"
    return str(value)


def yaml_rows(path: Path, prefix: str, owner: str | None = None) -> list[tuple[str, str, str]]:
    """(dotted key, value, comment) of a YAML file, `defaults` and `hydra` left out; a comment-only line
    indented under a key continues that key's comment. A key without a comment under a Lightning class's
    ``_target_`` is an argument of that class (documented by Lightning), and says so."""
    rows, stack, targets = [], [], {} if owner is None else {"": owner}
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            if rows and line.startswith(" ") and rows[-1][2]:
                rows[-1] = (*rows[-1][:2], rows[-1][2] + " " + line.strip().lstrip("# "))
            continue
        match = KEY.match(line)
        if not match:
            continue  # list items, blank lines
        indent, key, value, comment = len(match.group(1)), match.group(2), match.group(3) or "", match.group(4) or ""
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
        dotted = ".".join(k for _, k in stack)
        if stack[0][1] in ("defaults", "hydra"):
            continue
        parent = dotted.rpartition(".")[0]
        if key == "_target_":
            targets[parent] = value
            comment = comment or "the class built from this node's keys"
        elif not comment:
            owner = next((targets[p] for p in _ancestors(parent) if p in targets), None)
            comment = f"argument of `{owner}`" if owner and not owner.startswith("seq2seq.") else ""  # ours: say it
        rows.append((prefix + dotted, value, comment))
    return rows


def _ancestors(dotted: str) -> list[str]:
    parts = dotted.split(".") if dotted else []
    return [".".join(parts[:i]) for i in range(len(parts), -1, -1)]


def table(rows: list[tuple[str, str, str]]) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | `{v}` | {m.replace('|', '/')} |" if v else f"| `{k}` | | {m.replace('|', '/')} |"
              for k, v, m in rows]
    return "\n".join(lines)


def first_comment(path: Path) -> str:
    lines = [line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")
             and not line.startswith("# @package")]
    return lines[0] if lines else ""


def reference() -> str:
    conf = ROOT / "conf"
    parts = [HEADER]

    def section(title: str, about: str, rows: list[tuple[str, str, str]]) -> None:
        parts.append(f"## {title}\n\n{about}\n\n{table(rows)}\n")

    section("Training run (scripts/train.py)", "Top-level keys of `conf/train.yaml`, typed by `TrainConfig`.",
            dataclass_rows(config.TrainConfig))
    for group, cls, files in (("model", config.ModelConfig, "conf/model/*.yaml"),
                              ("optim", config.OptimConfig, "the `optim` group"),
                              ("decoding", config.DecodingConfig, "the `decoding` group")):
        about = (cls.__doc__ or "").splitlines()[0].replace("``", "`").rstrip(".")
        section(f"`{group}`", f"`{cls.__name__}`: {about}; presets: {files}.",
                dataclass_rows(cls, f"{group}."))
    section("`data`", "`conf/data/multi30k.yaml`, built as `TranslationDataModule` (seq2seq/training/datamodule.py); "
            "`data=wmt14_en_de` changes " + ", ".join(f"`{k}`" for k, _, _ in yaml_rows(conf / "data" / "wmt14_en_de.yaml",
                                                                                          "data.")) + ".",
            yaml_rows(conf / "data" / "multi30k.yaml", "data.")
            + dataclass_rows(config.SubwordSamplingConfig, "data.subword_sampling."))
    section("`trainer`", "`conf/trainer/default.yaml`: arguments of `lightning.pytorch.Trainer`, shared by every "
            "trainer preset.", yaml_rows(conf / "trainer" / "default.yaml", "trainer."))
    for preset in sorted((conf / "trainer").glob("*.yaml")):
        if preset.stem != "default":
            rows = yaml_rows(preset, "trainer.", owner="lightning.pytorch.Trainer")
            section(f"`trainer={preset.stem}`", first_comment(preset), rows)
    section("`callbacks`", "`conf/callbacks/default.yaml`: each entry is built by its `_target_` (Lightning's "
            "callbacks take their own arguments); `callbacks.<name>=null` leaves one out.",
            yaml_rows(conf / "callbacks" / "default.yaml", "callbacks."))
    section("`logger`", "`conf/logger/default.yaml`: the loggers, each built by its `_target_`.",
            yaml_rows(conf / "logger" / "default.yaml", "logger."))
    recipes = "\n".join(f"- `experiment={p.stem}`: {first_comment(p)}" for p in sorted((conf / "experiment").glob("*.yaml")))
    parts.append(f"## Recipes (`experiment=`)\n\n{recipes}\n")
    section("Translator options", "`TranslatorConfig`: the keys of every command that translates "
            "(translate.py, evaluate.py model_file=..., serve.py) and of `Translator.load`; null = the model file's.",
            dataclass_rows(config.TranslatorConfig))
    for title, cls in (("scripts/translate.py", config.TranslateConfig), ("scripts/evaluate.py", config.EvaluateConfig),
                       ("scripts/serve.py", config.ServeConfig), ("scripts/validate.py", config.ValidateConfig),
                       ("scripts/export.py", config.ExportConfig)):
        inherited = " Also the translator options above." if issubclass(cls, config.TranslatorConfig) else ""
        section(title, f"`{cls.__name__}`.{inherited}", dataclass_rows(cls, own_only=True))
    return "\n".join(parts)


if __name__ == "__main__":
    text = reference()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python scripts/config_reference.py", file=sys.stderr)
            sys.exit(1)
    else:
        OUT.write_text(text)
        print(f"wrote {OUT}")
