"""Inference numerics: fp32, bf16, or dynamic int8 quantization of a trained EncoderDecoder.

int8 uses ``torch.ao.quantization.quantize_dynamic`` on ``nn.GRU`` and ``nn.Linear``: weights stored as
int8 with one scale per output row (per channel), activations quantized on the fly at each call, results
in fp32. PyTorch's x86 kernels quantize activations to 7 bits (``reduce_range``) by default, because
CPUs without VNNI add pairs of u8 x s8 products in 16 bits, which 8-bit activations can overflow; on
cores with AVX-512 VNNI (AMX cores have it too; checked as seq2seq/config.py's cpu_precision checks bf16, through
torch.cpu) the products are summed in 32 bits, so activations keep all 8 bits (half the error of 7 bits).

Why ``torch.ao`` although PyTorch marks it deprecated: it is the only maintained implementation that
converts ``nn.GRU``, and the GRU cells are half of a decoder step; torchao, its named successor, quantizes
``nn.Linear`` only, so there the GRUs would stay fp32. The conversion happens at load time from an fp32
model file, so the model file format does not depend on it: should ``torch.ao`` go, this one function
moves to torchao (Linear only) and nothing else changes. Embeddings stay fp32 (a lookup costs no
arithmetic).

bf16 runs the search under ``torch.autocast("cpu", torch.bfloat16)``: matrix products (Linear, attention
bmm) in bf16 on AVX-512 BF16 / AMX units, the GRU, softmax and the search's scores in fp32.
"""
import copy
import warnings
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn
from torch.ao.nn.quantized import dynamic as qd

from seq2seq.model.gru import GRU, as_nn_gru


def quantize_int8(model: nn.Module, full_range: bool | None = None) -> nn.Module:
    """A copy of `model` (fp32, eval, CPU) with every nn.GRU and nn.Linear dynamically quantized to int8;
    full_range: 8-bit activations (default: where the CPU sums int8 products in 32 bits)."""
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, GRU):
                setattr(parent, name, as_nn_gru(child))  # torch.ao converts nn.GRU itself only
    with warnings.catch_warnings():  # the deprecation notice: the module docstring says why this API
        warnings.filterwarnings("ignore", message=r"(?s).*(torch\.ao\.quantization is deprecated|quantize_per_tensor)")
        quantized = torch.ao.quantization.quantize_dynamic(model, {nn.GRU: qconfig, nn.Linear: qconfig}, inplace=True)
    if full_range is None:
        full_range = _sums_int8_in_32_bits()
    if full_range:
        for module in quantized.modules():
            if isinstance(module, qd.Linear):
                module.version = 3  # torch.ao's forward then calls linear_dynamic without reduce_range
            elif isinstance(module, qd.GRU):
                for packed in module._all_weight_values:  # each layer and direction: rebuilt with reduce_range off
                    _, (b_ih, b_hh), _, _, (w_ih, w_hh) = packed.param.__getstate__()[0]
                    packed.param = torch.ops.quantized.make_quantized_cell_params_dynamic(w_ih, w_hh, b_ih, b_hh, False)
    return quantized


def _sums_int8_in_32_bits(vnni: bool | None = None) -> bool:
    """True where the x86 (fbgemm) engine runs on cores with AVX-512 VNNI (or on the features given)."""
    if vnni is None:
        vnni = torch.cpu._is_vnni_supported()
    return vnni and torch.backends.quantized.engine in ("x86", "fbgemm")


def is_quantized(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())


def compute(precision: str, device: str) -> AbstractContextManager:
    """The context search runs in: autocast to bf16, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()
