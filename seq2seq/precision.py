"""The CPU recipe's training precision, chosen from the cores: ``trainer.precision: ${cpu_precision:}``.

bf16-mixed where the cores have AVX-512 BF16 and no AMX, 32-true everywhere else. The 45-minute Multi30k
recipe measured both kinds of server CPU (issue 14): on AMD EPYC (AVX-512 BF16, no AMX) bf16 autocast
trains about 1.4x the target tokens/s of fp32; on an Intel Xeon with AMX it trained slower than fp32
(about 3,200 against 3,500 target tokens/s). Cores without AVX-512 BF16 emulate bfloat16 matmuls.
Set ``trainer.precision`` explicitly to override.
"""
import torch
from omegaconf import OmegaConf


def cpu_precision(avx512_bf16: bool | None = None, amx: bool | None = None) -> str:
    """"bf16-mixed" or "32-true" for this machine's CPU (or for the features given)."""
    if avx512_bf16 is None:
        avx512_bf16 = torch.cpu._is_avx512_bf16_supported()
    if amx is None:
        amx = torch.cpu._is_amx_tile_supported()
    return "bf16-mixed" if avx512_bf16 and not amx else "32-true"


OmegaConf.register_new_resolver("cpu_precision", cpu_precision, replace=True)
