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
        return dropped(x, self.p, x.shape)  # float32 draws: faster than bf16 ones on CPU


class WordDropout(nn.Dropout):
    """Word dropout (Sennrich et al., 2016, Nematus' ``dropout_source``): in training, each position of
    x (B, S, E) keeps its whole vector with probability 1 - p, scaled by 1 / (1 - p), or is zeroed, as if
    the word were not there; in evaluation the identity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        return dropped(x, self.p, x.shape[:-1] + (1,))  # one draw per position (B, S, 1)


def dropped(x: torch.Tensor, p: float, shape: torch.Size) -> torch.Tensor:
    """x times a mask of `shape` (broadcast over x) kept where a uniform draw is >= p, scaled by 1 / (1 - p)."""
    keep = torch.rand(shape, device=x.device) >= p
    return x * keep.to(x.dtype).mul_(1 / (1 - p))
