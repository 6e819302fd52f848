"""The documentation as a contract: the configuration reference equals what the code defines, every key
in it says what it means, and every relative link and image in README.md and docs/ resolves."""
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|<img [^>]*src=\"([^\"]+)\"")


def test_the_configuration_reference_is_generated_from_the_code() -> None:
    proc = subprocess.run([sys.executable, "scripts/config_reference.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_key_of_the_reference_has_a_meaning() -> None:
    reference = runpy.run_path(str(ROOT / "scripts" / "config_reference.py"))["reference"]()
    rows = [line for line in reference.splitlines() if line.startswith("| `")]
    assert len(rows) > 100  # every typed field and YAML key, not a stub
    undocumented = [row.split("|")[1].strip() for row in rows if not row.rstrip(" |").rsplit("|", 1)[-1].strip()]
    assert not undocumented, f"keys without a comment in seq2seq/config.py or conf/: {undocumented}"


def test_a_new_field_without_a_comment_is_caught() -> None:
    """The check above could not pass by accident: a field with no trailing comment has no meaning."""
    from dataclasses import dataclass

    namespace = runpy.run_path(str(ROOT / "scripts" / "config_reference.py"))

    @dataclass
    class Example:
        documented: int = 1  # what it does
        bare: int = 2

    assert namespace["field_comments"](Example) == {"documented": "what it does", "bare": ""}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_image_resolves(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold commands, not links
    missing = []
    for match in LINK.finditer(text):
        target = (match.group(1) or match.group(2)).split("#")[0]
        if not target or re.match(r"^[a-z]+:", target):
            continue  # an anchor on the same page, or an absolute URL
        if not (page.parent / target).exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"
