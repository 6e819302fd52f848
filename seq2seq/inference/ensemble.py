"""What search decodes with: one EncoderDecoder, or several whose per-step log-probabilities are averaged.

Search (search.py) sees only this interface: ``encode`` a source batch into a ``State``, ``step``
one target token per row to log-probabilities (B*K, V), and ``State`` methods that give each sentence K
rows (beam), reorder rows within their sentences, and drop finished sentences. A single model is an
ensemble of one, so there is one search code path; the log-probabilities of one model are exactly its
own log_softmax.
"""
from dataclasses import dataclass

import torch
from torch import nn

from seq2seq.inference.cpu_step import table_step
from seq2seq.model import EncoderDecoder
from seq2seq.model.attention import Memory


def rows_of(sentences: torch.Tensor, k: int) -> torch.Tensor:
    """Sentence positions (N,) -> the positions of their K rows each (N*K,), in a batch of K rows per sentence."""
    return (sentences.unsqueeze(1) * k + torch.arange(k, device=sentences.device)).view(-1)


@dataclass
class State:
    """Each member's attention memory over (B, S, M), one row per sentence, and decoder state (L, B*K, H):
    K rows per sentence (its beam; 1 in greedy search), consecutive."""
    per_model: list[tuple[Memory, torch.Tensor]]

    def expand(self, k: int) -> "State":
        """K rows per sentence, each a copy of its decoder state; the memory stays one row per sentence."""
        return State([(memory, hidden.repeat_interleave(k, dim=1)) for memory, hidden in self.per_model])

    def select(self, index: torch.Tensor, k: int = 1) -> "State":
        """Sentences `index` (N,) of the batch, in that order, with their K rows each."""
        rows = rows_of(index, k)
        return State([(memory.select(index), hidden.index_select(1, rows)) for memory, hidden in self.per_model])

    def reorder(self, index: torch.Tensor) -> "State":
        """Decoder states of rows `index`, memory unchanged: for beam reordering, whose rows stay
        within their sentence."""
        return State([(memory, hidden.index_select(1, index)) for memory, hidden in self.per_model])


class Ensemble(nn.Module):
    """Models decoded together: log p(y_t | ...) = mean over models of log_softmax(logits_t).

    The members must share one vocabulary and padding id (the same tokenizer): translator.py checks
    the model files; here the sizes are checked.
    """

    def __init__(self, models: list[EncoderDecoder]) -> None:
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        sizes = {(m.decoder.output.out_features, m.pad_id) for m in models}
        if len(sizes) > 1:
            raise ValueError(f"ensemble members differ in target vocabulary size or padding id: {sorted(sizes)}")
        self.members = nn.ModuleList(models)
        self.pad_id = models[0].pad_id
        self.table_steps = [table_step(m.decoder) for m in models]  # the CPU fp32 GRU step (cpu_step.py)

    @property
    def has_attention(self) -> bool:
        return any(m.decoder.attention is not None for m in self.members)

    def encode(self, src: torch.Tensor, src_lens: torch.Tensor) -> State:
        """src (B, S), src_lens (B,) -> every member's memory and decoder h_0."""
        return State([m.encode(src, src_lens) for m in self.members])

    def step(self, prev: torch.Tensor, state: State, rows: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """prev (B*K, 1) -> log-probabilities (N, V) in fp32 of the N rows `rows` (all if None: N = B*K),
        the next state, attention (B*K, 1, S) | None.

        The attention is the members' mean (members without attention left out).
        """
        logps, attns, per_model = [], [], []
        for model, table, (memory, hidden) in zip(self.members, self.table_steps, state.per_model):
            logits, hidden, attn = model.decoder(prev, hidden, memory, rows, table if table.applies(prev) else None)
            logps.append(torch.log_softmax(logits[:, -1].float(), dim=-1))
            per_model.append((memory, hidden))
            if attn is not None:
                attns.append(attn)
        logp = logps[0] if len(logps) == 1 else torch.stack(logps).mean(0)
        attn = None if not attns else attns[0] if len(attns) == 1 else torch.stack(attns).mean(0)
        return logp, State(per_model), attn


def as_ensemble(model: "EncoderDecoder | Ensemble") -> Ensemble:
    return model if isinstance(model, Ensemble) else Ensemble([model])
