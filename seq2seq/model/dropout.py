"""``nn.Dropout`` with a cheaper CPU mask.

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
