"""The LightningModule: label-smoothed loss, metrics, decoding for BLEU, optimizer and schedule."""
import math

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Timer

from seq2seq.data.tokenizer import BOS, EOS, PAD, Tokenizer
from seq2seq.evaluation import corpus_scores
from seq2seq.model import Seq2Seq
from seq2seq.search import translate_ids


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


class TranslationModule(L.LightningModule):
    def __init__(self, model: dict, tokenizer: dict, optim: dict, label_smoothing: float = 0.1,
                 decoding: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = Tokenizer.from_state(tokenizer)
        self.model = Seq2Seq(self.tokenizer.src_vocab_size, self.tokenizer.tgt_vocab_size, PAD, **model)
        self.decoding = {"max_len": 200, "beam_size": 5, "alpha": 1.0, **(decoding or {})}
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self._outputs: list[tuple[int, str, str, float, int]] = []

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokenizer"] = self.tokenizer.state()  # the checkpoint alone can translate

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["src"], batch["src_lens"], batch["tgt_in"])
        loss, nll, tokens = smoothed_loss(logits, batch["tgt_out"], self.hparams.label_smoothing)
        loss, nll = loss / tokens, nll / tokens
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.global_step}; "
                                     f"the last good checkpoint is kept")
        bs = batch["src"].size(0)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/ppl", nll.exp(), batch_size=bs)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, beam_size=1)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, beam_size=self.decoding["beam_size"])

    def _evaluate(self, batch: dict, beam_size: int) -> None:
        logits = self.model(batch["src"], batch["src_lens"], batch["tgt_in"])  # (B, T, V)
        target = batch["tgt_out"]
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(2, target.unsqueeze(2)).squeeze(2).masked_fill(target == PAD, 0.0).sum(1)  # (B,)
        tokens = (target != PAD).sum(1)
        hyps = self.translate_batch(batch["src"], batch["src_lens"], beam_size)
        for row in zip(batch["ids"].tolist(), hyps, batch["refs"], nll.tolist(), tokens.tolist()):
            self._outputs.append(row)

    def translate_batch(self, src: torch.Tensor, src_lens: torch.Tensor, beam_size: int) -> list[str]:
        d = self.decoding
        ids = translate_ids(self.model, src, src_lens, beam_size, d["alpha"], d["max_len"], BOS, EOS)
        return self.tokenizer.decode_tgt(ids)

    def on_validation_epoch_end(self) -> None:
        self._log_corpus_scores("val")

    def on_test_epoch_end(self) -> None:
        self._log_corpus_scores("test")

    def _log_corpus_scores(self, split: str) -> None:
        """Corpus scores over all ranks' sentences, each counted once, in corpus order."""
        outputs = self._outputs
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, outputs)
            outputs = [o for part in gathered for o in part]
        self._outputs = []
        by_id = {o[0]: o for o in outputs}  # a sentence seen on two ranks counts once
        ordered = [by_id[i] for i in sorted(by_id)]
        hyps, refs = [o[1] for o in ordered], [o[2] for o in ordered]
        nll = sum(o[3] for o in ordered) / max(sum(o[4] for o in ordered), 1)
        self.hypotheses = hyps
        scores = corpus_scores(hyps, refs, ("bleu", "chrf"))
        # Every rank holds the same corpus-level values: a max over ranks keeps them bit-identical
        # (a mean need not) and marks them as global for Lightning.
        self.log_dict({f"{split}/loss": nll, f"{split}/ppl": math.exp(min(nll, 50)),
                       f"{split}/bleu": scores["bleu"], f"{split}/chrf": scores["chrf"]},
                      prog_bar=split == "val", sync_dist=True, reduce_fx="max")

    def configure_optimizers(self):
        o = self.hparams.optim
        optimizer = torch.optim.Adam(self.parameters(), lr=o["lr"], betas=tuple(o.get("betas", (0.9, 0.999))),
                                     weight_decay=o.get("weight_decay", 0.0))
        if o["schedule"] == "plateau":  # halve the rate when validation BLEU stops rising
            plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=o.get("factor", 0.5), patience=o.get("patience", 1),
                min_lr=o.get("min_lr", 1e-5))
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": plateau, "monitor": "val/bleu", "interval": "epoch"}}
        if o["schedule"] == "inverse_sqrt":
            warmup = max(o.get("warmup_steps", 1), 1)
            sched = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: min((step + 1) / warmup, math.sqrt(warmup / (step + 1))))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if o["schedule"] == "cosine":  # warm up, then half a cosine from lr down to min_lr over the budget
            warmup, floor = max(o.get("warmup_steps", 1), 1), o.get("min_lr", 0.0) / o["lr"]
            sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(
                (step + 1) / warmup, floor + (1 - floor) * (1 + math.cos(math.pi * self.budget_spent())) / 2))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if o["schedule"] == "constant":
            return optimizer
        raise ValueError(f"optim.schedule must be plateau, inverse_sqrt, cosine or constant; got {o['schedule']!r}")

    def budget_spent(self) -> float:
        """The fraction of the training budget used, 0..1: the larger of elapsed / trainer.max_time and
        steps / the step budget (max_steps, or max_epochs x batches). Under DDP rank 0's clock counts."""
        if self._trainer is None:
            return 0.0
        trainer, spent = self.trainer, [0.0]
        steps = trainer.estimated_stepping_batches
        if math.isfinite(steps) and steps > 0:
            spent.append(trainer.global_step / steps)
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        if timer is not None and (remaining := timer.time_remaining()) is not None:
            elapsed = timer.time_elapsed()
            spent.append(trainer.strategy.broadcast(elapsed) / (elapsed + remaining))
        return min(max(spent), 1.0)
