"""The CPU recipe's precision follows the cores: bf16-mixed with AVX-512 BF16 and no AMX, else fp32."""
import pytest
import torch

from conftest import compose_config
from seq2seq.config import cpu_precision


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, "bf16-mixed"), (True, True, "32-true"),
                                                        (False, False, "32-true"), (False, True, "32-true")])
def test_precision_by_cpu_features(avx512_bf16: bool, amx: bool, expected: str) -> None:
    assert cpu_precision(avx512_bf16, amx) == expected


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, "bf16-mixed"), (True, True, "32-true"),
                                                        (False, False, "32-true")])
def test_the_cpu_recipe_resolves_its_precision_from_the_cores(monkeypatch, avx512_bf16, amx, expected) -> None:
    """${cpu_precision:} in conf/experiment/multi30k_cpu.yaml asks torch for the cores' features."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert compose_config("train", ["experiment=multi30k_cpu"]).trainer.precision == expected
    assert compose_config("train", ["experiment=multi30k_cpu", "trainer.precision=32-true"]).trainer.precision == "32-true"
