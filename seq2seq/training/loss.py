"""The training loss: label-smoothed cross-entropy over non-pad target positions."""
import torch
from torch import nn

from seq2seq.data.tokenizer import PAD

CHUNK = 64  # positions per float32 log_softmax: (64, V) stays in cache



class SmoothedCrossEntropy(torch.autograd.Function):
    """Label-smoothed cross-entropy over non-pad positions; the gradient is computed with the loss.

    With lse = logsumexp(z) over the V logits z of a position and target y:
      nll = lse - z_y,  smooth = lse - mean(z)  (log_softmax gives z - lse),  loss = (1 - s) nll + s smooth
      d loss / d z = softmax(z) - (1 - s) onehot(y) - s / V
    Autograd through log_softmax, a gather and a mean would allocate and fill several (N, V) tensors.
    Here CHUNK positions at a time go through one float32 log_softmax that stays in cache and becomes
    the gradient in place, written once in the logits' dtype (bf16 logits are never copied whole to float32).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, smoothing: float):
        V = logits.size(-1)
        flat, tgt = logits.reshape(-1, V), target.reshape(-1, 1)  # (N, V), (N, 1)
        keep = (tgt != PAD).to(torch.float32)  # (N, 1)
        grad = torch.empty_like(flat)  # (N, V), the logits' dtype
        # float32 logits: log_softmax writes straight into the gradient's rows; others are cast into `cast`
        # and normalised into `work`, CHUNK rows of float32 each, reused
        cast, work = (None, None) if flat.dtype == torch.float32 else \
            flat.new_empty(2, min(len(flat), CHUNK), V, dtype=torch.float32).unbind(0)
        losses, nlls = [], []
        for start in range(0, len(flat), CHUNK):
            rows = slice(start, start + CHUNK)
            z, t, m = flat[rows], tgt[rows], keep[rows]
            if work is None:
                logp = torch.log_softmax(z, -1, out=grad[rows])  # z - lse
            else:
                logp = torch.log_softmax(cast[: len(z)].copy_(z), -1, out=work[: len(z)])
            nll = logp.gather(1, t).neg_().mul_(m)  # (c, 1)
            losses.append(torch.lerp(nll, logp.mean(1, keepdim=True).neg_().mul_(m), smoothing).sum())
            nlls.append(nll.sum())
            p = logp.exp_().sub_(smoothing / V)  # softmax - s/V
            p.scatter_add_(1, t, p.new_full(t.shape, smoothing - 1)).mul_(m)
            if work is not None:
                grad[rows] = p
        ctx.save_for_backward(grad)
        ctx.shape = logits.shape
        nll_sum = torch.stack(nlls).sum()
        ctx.mark_non_differentiable(nll_sum)
        return torch.stack(losses).sum(), nll_sum

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, grad_nll: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad.mul_(grad_loss.to(grad.dtype)).view(ctx.shape), None, None


def smoothed_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """logits (..., V), target (...) -> (label-smoothed loss sum, NLL sum, tokens) over non-pad.

    The loss equals cross_entropy(label_smoothing=smoothing, ignore_index=PAD, reduction="sum");
    the NLL sum (for perplexity) carries no gradient.
    """
    loss, nll = SmoothedCrossEntropy.apply(logits, target, smoothing)
    return loss, nll, int((target != PAD).sum())


def batch_loss(model: nn.Module, batch: dict, smoothing: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A training batch's (loss sum, NLL sum, tokens): the EncoderDecoder's logits at non-pad targets only."""
    target = batch["tgt_out"]  # (B, T)
    keep = target != PAD
    logits = model(batch["src"], batch["src_lens"], batch["tgt_in"], positions=keep)  # (N, V)
    return smoothed_loss(logits, target[keep], smoothing)
