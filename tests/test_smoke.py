from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conftest import CONF, MULTI30K, compose_config
from seq2seq.data.sources import read_lines
from seq2seq.evaluation import corpus_scores


@pytest.mark.slow
def test_training_run_writes_a_model_file_and_scores(trained_run):
    """The reported test BLEU is sacreBLEU of the written test.hyp against the test references."""
    assert Path(trained_run["model_file"]).is_file()
    assert (trained_run["run_dir"] / "checkpoints" / "last.ckpt").is_file()
    hyps = (trained_run["run_dir"] / "test.hyp").read_text(encoding="utf-8").splitlines()
    refs = read_lines(MULTI30K / "test_2016_flickr.de.gz")[:300]  # data.eval_limit=300
    assert len(hyps) == len(refs) and any(hyps)
    assert trained_run["test/bleu"] == pytest.approx(corpus_scores(hyps, refs, ("bleu",))["bleu"], abs=1e-4)


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
    setting = OmegaConf.to_container(OmegaConf.load(path))
    setting.pop("defaults", None)
    leaves = flatten(setting)
    cfg, default = (dict(flatten(OmegaConf.to_container(compose_config("train", o), resolve=False)))
                    for o in (overrides, []))  # interpolations as written (${paths.run_dir} needs a run)
    for key, value in leaves:
        assert cfg[key] == value, key
    assert any(default.get(key) != value for key, value in leaves)  # it changes something


def flatten(tree: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Nested dict -> [("a.b.c", leaf value), ...]."""
    out = []
    for key, value in tree.items():
        out += flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
    return out
