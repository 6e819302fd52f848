"""Learning-rate schedules (``optim.schedule``) as multipliers of ``optim.lr``, and the training budget
the cosine schedule spends.

  plateau       the rate times `factor` after `patience` validations without a better val BLEU
  inverse_sqrt  linear warm-up over `warmup_steps`, then sqrt(warmup / step)
  cosine        linear warm-up, then half a cosine from 1 down to min_lr / lr as the budget is spent
  constant      1
"""
import math
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer

from seq2seq.config import OptimConfig


def inverse_sqrt(step: int, warmup: int) -> float:
    """Multiplier at optimizer step `step` (0-based)."""
    return min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))


def cosine(step: int, warmup: int, spent: float, floor: float) -> float:
    """Multiplier at step `step` with `spent` (0..1) of the budget used; ends at `floor`."""
    return min((step + 1) / warmup, floor + (1 - floor) * (1 + math.cos(math.pi * spent)) / 2)


def budget_spent(trainer: L.Trainer) -> float:
    """The fraction of the training budget used, 0..1: the larger of elapsed / trainer.max_time and
    steps / the step budget (max_steps, or max_epochs x batches). Under DDP rank 0's clock counts."""
    spent = [0.0]
    steps = trainer.estimated_stepping_batches
    if math.isfinite(steps) and steps > 0:
        spent.append(trainer.global_step / steps)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    if timer is not None and (remaining := timer.time_remaining()) is not None:
        elapsed = timer.time_elapsed()
        spent.append(trainer.strategy.broadcast(elapsed) / (elapsed + remaining))
    return min(max(spent), 1.0)


def lr_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, spent: Callable[[], float]) -> dict | None:
    """Lightning's lr_scheduler entry for `optim.schedule` (None for constant); `spent` reads the budget."""
    if optim.schedule == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=optim.factor,
                                                             patience=optim.patience, min_lr=optim.min_lr)
        return {"scheduler": plateau, "monitor": "val/bleu", "interval": "epoch"}
    if optim.schedule == "inverse_sqrt":
        factor = lambda step: inverse_sqrt(step, optim.warmup_steps)  # noqa: E731
    elif optim.schedule == "cosine":
        factor = lambda step: cosine(step, optim.warmup_steps, spent(), optim.min_lr / optim.lr)  # noqa: E731
    else:
        return None
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, factor), "interval": "step"}
