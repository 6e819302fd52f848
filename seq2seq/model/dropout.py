"""``nn.Dropout`` with a cheaper CPU mask, and source word dropout.

On CPU ``nn.Dropout`` draws its mask with ``bernoulli_``, one scalar draw per element; a uniform
``torch.rand`` compared with p gives the same distribution, vectorised. Elsewhere (CUDA's fused
kernel, evaluation) this is ``nn.Dropout``. The profile rows of benchmarks/speed.py show the cost.
"""
import torch
from torch import nn


class FastDropout(nn.Dropout):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        keep = torch.rand(x.shape) >= self.p  # float32 draws: faster than bf16 ones on CPU
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))


class WordDropout(nn.Module):
    """Word dropout (Sennrich et al., 2016, Nematus' ``dropout_source``): in training, each position of
    x (B, S, E) keeps its whole vector with probability 1 - p, scaled by 1 / (1 - p), or is zeroed, as if
    the word were not there; in evaluation the identity."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape[:-1] + (1,), device=x.device) >= self.p  # (B, S, 1)
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"
