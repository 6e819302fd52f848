"""The LightningModule: training step, validation/test scores, optimizer. Model, loss, search and
schedules live in their own modules; this file wires them into Lightning's loop."""
import math
from pathlib import Path
from typing import NamedTuple

import lightning as L
import torch
import torch.distributed as dist

from seq2seq.atomic_files import atomic_write_text
from seq2seq.config import DecodingConfig, ModelConfig, OptimConfig, check_label_smoothing, from_dict
from seq2seq.data.tokenizer import BOS, EOS, PAD, Tokenizer
from seq2seq.evaluation import corpus_scores
from seq2seq.inference.search import decode_ids
from seq2seq.model import EncoderDecoder
from seq2seq.training import schedules
from seq2seq.training.loss import batch_loss


class EvaluatedSentence(NamedTuple):
    """One validation or test sentence: corpus position, search output, reference, teacher-forced NLL."""
    id: int
    hypothesis: str
    reference: str
    nll: float
    tokens: int


class TranslationModule(L.LightningModule):
    """Trains an EncoderDecoder with label-smoothed cross-entropy; validation decodes greedily, test with
    `decoding`. The constructor takes plain dicts (saved as hyper-parameters in every checkpoint).

    When `hypothesis_file` is set, the test hypotheses are written there, one line per sentence in corpus order.
    """

    def __init__(self, model: dict, tokenizer: dict, optim: dict, label_smoothing: float = 0.1,
                 decoding: dict | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        check_label_smoothing(label_smoothing)
        self.tokenizer = Tokenizer.from_state(tokenizer)
        self.model = EncoderDecoder(self.tokenizer.src_vocab_size, self.tokenizer.tgt_vocab_size, PAD,
                                    from_dict(ModelConfig, model, "model"))
        self.optim = from_dict(OptimConfig, optim, "optim")
        self.decoding = from_dict(DecodingConfig, decoding or {}, "decoding")
        self.label_smoothing = label_smoothing
        self.hypothesis_file: Path | None = None
        self.flops_per_batch = None  # ThroughputMonitor: FLOPs are not counted (benchmarks/speed.py measures them)
        self._sentences: list[EvaluatedSentence] = []

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["tokenizer"] = self.tokenizer.state()  # the checkpoint alone can translate

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss, nll, tokens = batch_loss(self.model, batch, self.label_smoothing)
        loss, nll = loss / tokens, nll / tokens
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.global_step}; "
                                     f"the last good checkpoint is kept")
        size = batch["src"].size(0)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/ppl", nll.exp(), batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, DecodingConfig(beam_size=1, max_len=self.decoding.max_len))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.decoding)

    def _evaluate(self, batch: dict, decoding: DecodingConfig) -> None:
        logits = self.model(batch["src"], batch["src_lens"], batch["tgt_in"])  # (B, T, V)
        target = batch["tgt_out"]
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(2, target.unsqueeze(2)).squeeze(2).masked_fill(target == PAD, 0.0).sum(1)  # (B,)
        tokens = (target != PAD).sum(1)
        ids = decode_ids(self.model, batch["src"], batch["src_lens"], decoding, bos=BOS, eos=EOS)
        hyps = self.tokenizer.decode_tgt(ids)
        self._sentences.extend(EvaluatedSentence(*row) for row in zip(
            batch["ids"].tolist(), hyps, batch["refs"], nll.tolist(), tokens.tolist()))

    def on_validation_epoch_end(self) -> None:
        self._log_corpus_scores("val")

    def on_test_epoch_end(self) -> None:
        sentences = self._log_corpus_scores("test")
        if self.hypothesis_file is not None and self.trainer.is_global_zero:
            atomic_write_text(self.hypothesis_file, "".join(s.hypothesis + "\n" for s in sentences))

    def _log_corpus_scores(self, split: str) -> list[EvaluatedSentence]:
        """Corpus scores over all ranks' sentences, each counted once; the sentences in corpus order."""
        sentences, self._sentences = self._sentences, []
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, sentences)
            sentences = [s for part in gathered for s in part]
        by_id = {s.id: s for s in sentences}  # a sentence seen on two ranks counts once
        ordered = [by_id[i] for i in sorted(by_id)]
        nll = sum(s.nll for s in ordered) / max(sum(s.tokens for s in ordered), 1)
        scores = corpus_scores([s.hypothesis for s in ordered], [s.reference for s in ordered], ("bleu", "chrf"))
        # Every rank holds the same corpus-level values: a max over ranks keeps them bit-identical
        # (a mean need not) and marks them as global for Lightning.
        self.log_dict({f"{split}/loss": nll, f"{split}/ppl": math.exp(min(nll, 50)),
                       f"{split}/bleu": scores["bleu"], f"{split}/chrf": scores["chrf"]},
                      prog_bar=split == "val", sync_dist=True, reduce_fx="max")
        return ordered

    @property
    def _fused_adam(self) -> bool:
        """optim.fused, except under fp16's GradScaler: a fused Adam unscales gradients itself, after clipping."""
        return self.optim.fused and not (self._trainer is not None and self.trainer.precision == "16-mixed")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning's mixed-precision plugin refuses to clip for an optimizer that can unscale gradients
        # itself (a fused Adam), which matters only with fp16's GradScaler (not used fused, above).
        if gradient_clip_val and self._fused_adam and gradient_clip_algorithm in (None, "norm"):
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self) -> dict:
        o = self.optim
        optimizer = torch.optim.Adam(self.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay,
                                     fused=self._fused_adam)
        scheduler = schedules.lr_scheduler(optimizer, o, lambda: schedules.budget_spent(self.trainer))
        return {"optimizer": optimizer} if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
