"""The training loss: label-smoothed cross-entropy over non-pad target positions."""
import torch

from seq2seq.data.tokenizer import PAD


class SmoothedCrossEntropy(torch.autograd.Function):
    """Label-smoothed cross-entropy over non-pad positions, forward and backward in a few passes.

    With lse = logsumexp(z) over the V logits z of a position and target y:
      nll = lse - z_y,  smooth = lse - mean(z)  (log_softmax gives z - lse),  loss = (1 - s) nll + s smooth
      d loss / d z = softmax(z) - (1 - s) onehot(y) - s / V
    Autograd through log_softmax, a boolean-mask gather and a mean allocates and fills several
    (B, T, V) tensors; this writes one float32 log_softmax and turns it into the gradient in place.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, smoothing: float):
        logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)  # (B, T, V), z - lse
        mask = target != PAD
        nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).masked_fill(~mask, 0.0)  # (B, T)
        smooth = -logp.mean(-1).masked_fill(~mask, 0.0)
        ctx.save_for_backward(logp, target, mask)
        ctx.smoothing, ctx.dtype = smoothing, logits.dtype
        nll_sum = nll.sum()
        ctx.mark_non_differentiable(nll_sum)
        return ((1 - smoothing) * nll + smoothing * smooth).sum(), nll_sum

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, grad_nll: torch.Tensor):
        logp, target, mask = ctx.saved_tensors
        s = ctx.smoothing
        grad = logp.exp_().sub_(s / logp.size(-1))  # softmax - s/V, in the saved tensor's memory
        grad.scatter_add_(-1, target.unsqueeze(-1), grad.new_full((*target.shape, 1), s - 1))
        grad.mul_((mask * grad_loss).unsqueeze(-1))
        return grad.to(ctx.dtype), None, None


def smoothed_loss(logits: torch.Tensor, target: torch.Tensor, smoothing: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """logits (B, T, V), target (B, T) -> (label-smoothed loss sum, NLL sum, tokens) over non-pad.

    The loss equals cross_entropy(label_smoothing=smoothing, ignore_index=PAD, reduction="sum");
    the NLL sum (for perplexity) carries no gradient.
    """
    loss, nll = SmoothedCrossEntropy.apply(logits, target, smoothing)
    return loss, nll, int((target != PAD).sum())
