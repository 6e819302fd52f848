"""The CPU recipe's precision follows the cores: bf16-mixed with AVX-512 BF16 and no AMX, else fp32."""
import pytest
import torch

from conftest import compose_config
from seq2seq.config import cpu_precision


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, "bf16-mixed"), (True, True, "32-true"),
                                                        (False, False, "32-true"), (False, True, "32-true")])
def test_precision_by_cpu_features(avx512_bf16: bool, amx: bool, expected: str) -> None:
    assert cpu_precision(avx512_bf16, amx) == expected


def test_cpu_recipe_resolves_its_precision_on_this_machine() -> None:
    cfg = compose_config("train", ["experiment=multi30k_cpu"])
    here = "bf16-mixed" if torch.cpu._is_avx512_bf16_supported() and not torch.cpu._is_amx_tile_supported() \
        else "32-true"
    assert cfg.trainer.precision == cpu_precision() == here
    assert compose_config("train", ["experiment=multi30k_cpu", "trainer.precision=32-true"]).trainer.precision == "32-true"
