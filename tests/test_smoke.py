from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import CONF, compose_config


def test_training_run_writes_a_model_file_and_scores(trained_run):
    assert Path(trained_run["model_file"]).is_file()
    assert 0 <= trained_run["test/bleu"] <= 100
    assert (trained_run["run_dir"] / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("recipe", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_key_a_recipe_sets_takes_effect(recipe: str) -> None:
    """conf/experiment/*.yaml compose last: each value a recipe sets is the one used."""
    check_recipe(CONF / "experiment" / f"{recipe}.yaml", [f"experiment={recipe}"])


def test_a_recipe_overrides_top_level_keys(tmp_path: Path) -> None:
    """A recipe may set what train.yaml itself sets (optim, decoding, seed), not only the groups."""
    (tmp_path / "experiment").mkdir()
    recipe = tmp_path / "experiment" / "mine.yaml"
    recipe.write_text("# @package _global_\nseed: 7\noptim: {lr: 0.005}\ndecoding: {beam_size: 3}\n"
                      "model: {hidden_size: 64}\n")
    check_recipe(recipe, [f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine"])


def check_recipe(path: Path, overrides: list[str]) -> None:
    setting = OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # ${cpu_precision:} -> this machine's
    setting.pop("defaults", None)
    leaves = flatten(setting)
    cfg, default = compose_config("train", overrides), compose_config("train", [])
    for key, value in leaves:
        assert OmegaConf.select(cfg, key) == value, key
    assert any(OmegaConf.select(default, key) != value for key, value in leaves)  # it changes something


def flatten(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dict -> [("a.b.c", leaf value), ...]."""
    out = []
    for key, value in tree.items():
        out += flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
    return out
