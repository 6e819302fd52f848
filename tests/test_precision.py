"""The CPU recipe's precision follows the cores: bf16-mixed on AMD cores with AVX-512 BF16 (and no AMX), else fp32."""
import pytest
import torch

import seq2seq.config
from conftest import compose_config
from seq2seq.config import cpu_precision, cpu_vendor

AMD, INTEL = "AuthenticAMD", "GenuineIntel"


@pytest.mark.parametrize("avx512_bf16, amx, vendor, expected", [
    (True, False, AMD, "bf16-mixed"), (False, False, AMD, "32-true"),
    (True, False, INTEL, "32-true"),  # Intel's AVX-512 BF16 without AMX: bf16 measured slower (docs/benchmarks.md)
    (True, True, INTEL, "32-true"), (False, False, INTEL, "32-true"), (True, False, "", "32-true")])
def test_precision_by_cpu_features(avx512_bf16: bool, amx: bool, vendor: str, expected: str) -> None:
    assert cpu_precision(avx512_bf16, amx, vendor) == expected


@pytest.mark.parametrize("avx512_bf16, amx, vendor, expected", [(True, False, AMD, "bf16-mixed"),
                                                                (True, False, INTEL, "32-true"),
                                                                (True, True, INTEL, "32-true"),
                                                                (False, False, AMD, "32-true")])
def test_the_cpu_recipe_resolves_its_precision_from_the_cores(monkeypatch, avx512_bf16, amx, vendor, expected) -> None:
    """${cpu_precision:} in conf/experiment/multi30k_cpu.yaml asks torch and the OS for the cores' features."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(seq2seq.config, "cpu_vendor", lambda: vendor)
    assert compose_config("train", ["experiment=multi30k_cpu"]).trainer.precision == expected
    assert compose_config("train", ["experiment=multi30k_cpu", "trainer.precision=32-true"]).trainer.precision == "32-true"


def test_the_vendor_is_read_from_the_os(monkeypatch) -> None:
    """/proc/cpuinfo's vendor_id on Linux; where it cannot be read, the vendor platform.processor() names (Windows)."""
    import builtins
    import platform
    import sys

    if sys.platform == "linux" and platform.machine() == "x86_64":
        assert cpu_vendor() in (AMD, INTEL)
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: (_ for _ in ()).throw(OSError(path))
                        if path == "/proc/cpuinfo" else real_open(path, *a, **k))
    monkeypatch.setattr(platform, "processor", lambda: "AMD64 Family 25 Model 17 Stepping 1, AuthenticAMD")
    assert cpu_vendor() == AMD
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert cpu_vendor() == ""
