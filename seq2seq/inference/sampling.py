"""Sampling in place of greedy search's argmax: each piece drawn from the model's distribution at a temperature,
cut to the top k pieces or to the nucleus of probability p (top-p), the way back-translation data is made.

Every sentence draws from its own generator, seeded from the sampling seed and the line itself
(``line_seed``): the uniform numbers a sentence uses depend on nothing else in its batch, so the same line
gives the same sample whatever batch it lands in. A piece is drawn by inverting the cumulative distribution
of the kept pieces (most probable first) at the sentence's uniform number for that step.
"""
import hashlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    """What to draw from: method top_k | top_p, top_k pieces or probability top_p, temperature > 0, seed.
    The defaults and checks are TranslatorConfig's (sampling, top_k, top_p, temperature, sampling_seed)."""
    method: str
    top_k: int
    top_p: float
    temperature: float
    seed: int


def line_seed(seed: int, text: str, prefix: str | None = None) -> int:
    """A 63-bit generator seed for one line (and its forced prefix), the same in every process."""
    key = f"{seed}\x00{text}\x00{prefix or ''}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


class Sampler:
    """The draws of a batch of sentences: uniforms (B, steps) in float64, row b from seeds[b]'s generator.

    Row b's numbers are the first limits[b] of its generator (steps at or past its limit end the sentence
    with EOS and draw nothing), so they depend only on its seed and limit, never on the batch.
    """

    def __init__(self, sampling: Sampling, seeds: list[int], limits: torch.Tensor, steps: int,
                 device: torch.device | str = "cpu") -> None:
        self.sampling = sampling
        uniforms = torch.zeros(len(seeds), steps, dtype=torch.float64)
        for row, (seed, limit) in enumerate(zip(seeds, limits.tolist())):
            n = min(limit, steps)
            uniforms[row, :n] = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        self.uniforms = uniforms.to(device)

    def pick(self, logp: torch.Tensor, rows: torch.Tensor, t: int) -> torch.Tensor:
        """logp (N, V) of the batch's rows `rows` (N,) at step t -> the drawn pieces (N,).

        Pieces at -inf (never generated) have probability 0 and are never drawn.
        """
        s = self.sampling
        x = logp.double() / s.temperature
        if s.method == "top_k":
            x, words = x.topk(min(s.top_k, x.size(1)), dim=1)  # (N, k), most probable first
        else:
            x, words = x.sort(dim=1, descending=True, stable=True)
        p = torch.softmax(x, dim=1)
        if s.method == "top_p":  # keep a piece while the pieces before it hold less than top_p
            p = p * ((p.cumsum(1) - p) < s.top_p)
        cdf = p.cumsum(1)
        u = self.uniforms[rows, t].unsqueeze(1) * cdf[:, -1:]  # (N, 1), in [0, total)
        index = (cdf <= u).sum(1).clamp_(max=cdf.size(1) - 1)  # the first piece whose cdf passes u
        return words.gather(1, index.unsqueeze(1)).squeeze(1)
