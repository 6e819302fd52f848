"""The model can learn: a tiny EncoderDecoder masters sequence reversal, and a real training run's loss falls."""
import csv
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY, compose_config
from seq2seq import modelfile
from seq2seq.config import ModelConfig
from seq2seq.data.tokenizer import BOS, EOS, PAD, Tokenizer
from seq2seq.inference.search import greedy, output_limits, strip
from seq2seq.model import EncoderDecoder

VOCAB, FIRST_SYMBOL, MIN_LEN, MAX_LEN = 20, 4, 3, 8  # symbols 4..19 (0..3 are PAD UNK BOS EOS)


def reversal_batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random symbol strings and their reversals: src (B, S) = x + EOS, src_lens (B,),
    tgt_in (B, S) = BOS + reversed x, tgt_out (B, S) = reversed x + EOS, all PAD-padded."""
    lens = torch.randint(MIN_LEN, MAX_LEN + 1, (n,), generator=g)
    symbols = torch.randint(FIRST_SYMBOL, VOCAB, (n, MAX_LEN), generator=g)
    pos = torch.arange(MAX_LEN + 1)
    real = pos < lens.unsqueeze(1)  # (B, S)
    src = torch.full((n, MAX_LEN + 1), PAD)
    src[:, :MAX_LEN] = symbols
    src = src.masked_fill(~real, PAD).scatter(1, lens.unsqueeze(1), EOS)
    reversed_idx = (lens.unsqueeze(1) - 1 - pos).clamp(min=0)  # position i reads x[len - 1 - i]
    tgt_out = src.gather(1, reversed_idx).masked_fill(~real, PAD).scatter(1, lens.unsqueeze(1), EOS)
    tgt_in = torch.cat([torch.full((n, 1), BOS), tgt_out[:, :-1]], 1).masked_fill(tgt_out == PAD, PAD)
    return src, lens + 1, tgt_in, tgt_out


def test_reversal_batch() -> None:
    src, src_lens, tgt_in, tgt_out = reversal_batch(50, torch.Generator().manual_seed(0))
    for s, n, ti, to in zip(src.tolist(), src_lens.tolist(), tgt_in.tolist(), tgt_out.tolist()):
        x = s[: n - 1]
        assert s[n - 1 :] == [EOS] + [PAD] * (MAX_LEN + 1 - n) and all(t >= FIRST_SYMBOL for t in x)
        assert to[:n] == x[::-1] + [EOS] and ti[:n] == [BOS] + x[::-1]
        assert set(to[n:]) <= {PAD} and set(ti[n:]) <= {PAD}


@pytest.mark.slow
def test_tiny_model_learns_to_reverse_sequences() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = EncoderDecoder(VOCAB, VOCAB, PAD, ModelConfig(input_size=32, hidden_size=32, dropout=0.0,
                                                            attention="luong", tie_embeddings=False))
    steps = 300
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=steps, pct_start=0.1)
    for _ in range(steps):
        src, src_lens, tgt_in, tgt_out = reversal_batch(64, g)
        logits = model(src, src_lens, tgt_in)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    model.eval()
    src, src_lens, _, tgt_out = reversal_batch(500, torch.Generator().manual_seed(12345))  # held out
    tokens, _ = greedy(model, src, src_lens, output_limits(src_lens, max_len=50), bos=BOS, eos=EOS).best()
    expected = strip(tgt_out, EOS)
    accuracy = sum(h == r for h, r in zip(strip(tokens, EOS), expected)) / len(expected)
    assert accuracy > 0.9, f"exact-match accuracy {accuracy:.3f} after {steps} steps"


def metric(rows: list[dict], name: str) -> list[float]:
    """The logged values of `name`, in step order."""
    return [float(r[name]) for r in sorted(rows, key=lambda r: int(r["step"])) if r.get(name)]


@pytest.mark.slow
def test_multi30k_training_loss_falls(trained_run: dict) -> None:
    with open(trained_run["run_dir"] / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train_loss, val_loss = metric(rows, "train/loss"), metric(rows, "val/loss")
    vocab = Tokenizer.from_state(modelfile.read_contents(trained_run["model_file"])["tokenizer"]).tgt_vocab_size
    assert len(train_loss) >= 3 and len(val_loss) == trained_run["cfg"].trainer.max_epochs
    assert train_loss[-1] < train_loss[0] - 0.3, train_loss
    assert train_loss[-1] < math.log(vocab) - 1.5, (train_loss, vocab)  # a uniform guess costs log V
    assert val_loss[-1] < val_loss[0], val_loss


COSINE = [*TINY, "data.train_limit=300", "data.eval_limit=20", "optim.schedule=cosine", "optim.lr=2e-3",
          "optim.min_lr=2e-5", "optim.warmup_steps=5", "trainer.log_every_n_steps=1", "callbacks.early_stopping=null",
          "decoding.beam_size=1", "decoding.max_len=20", "average_checkpoints=1"]


@pytest.mark.slow
def test_cosine_schedule_spends_a_step_budget(tmp_path, multi30k) -> None:
    from seq2seq.training.train import train

    train(compose_config("train", [*COSINE, "trainer.max_steps=30", "trainer.max_epochs=100"], tmp_path))
    with open(tmp_path / "logs" / "metrics.csv", newline="") as f:
        lr = metric(list(csv.DictReader(f)), "lr-Adam")  # the rate each of the 30 steps ran at
    floor = 2e-5 / 2e-3
    expected = [2e-3 * min((k + 1) / 5, floor + (1 - floor) * (1 + math.cos(math.pi * k / 30)) / 2) for k in range(30)]
    assert len(lr) == 30 and all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(lr, expected)), (lr, expected)


@pytest.mark.slow
def test_cosine_schedule_spends_a_time_budget(tmp_path, multi30k) -> None:
    from seq2seq.training.train import train

    train(compose_config("train", [*COSINE, "trainer.max_time=00:00:00:15", "trainer.max_epochs=1000"], tmp_path))
    with open(tmp_path / "logs" / "metrics.csv", newline="") as f:
        lr = metric(list(csv.DictReader(f)), "lr-Adam")
    peak = lr.index(max(lr))
    assert max(lr) > 0.9 * 2e-3 and len(lr) > 20, lr
    assert all(b <= a for a, b in zip(lr[peak:], lr[peak + 1:])), lr  # falls with the clock after warm-up
    assert lr[-1] < 0.1 * 2e-3, lr  # and has nearly reached min_lr when max_time stops the run


@pytest.mark.slow
def test_ema_weights_are_validated_checkpointed_and_written(tmp_path, multi30k) -> None:
    """callbacks.ema (the CPU recipe's): checkpoints hold the moving average as their weights (the raw ones
    beside them, for resuming), and the model file is made of the average."""
    from conftest import checkpoint
    from seq2seq.training.train import train

    ema = "callbacks.ema={_target_:lightning.pytorch.callbacks.EMAWeightAveraging,decay:0.9}"
    train(compose_config("train", [*COSINE, ema, "trainer.max_steps=8", "+trainer.val_check_interval=4"], tmp_path))
    best = checkpoint(next((tmp_path / "checkpoints").glob("best-*.ckpt")))
    average, raw = best["state_dict"], best["current_model_state"]
    assert average.keys() == raw.keys()
    assert any(not torch.equal(average[k], raw[k]) for k in average)  # the average is not the last step's weights
    written = modelfile.read_contents(tmp_path / "model.pt")["state_dict"]
    assert all(torch.equal(written[k.removeprefix("model.")], v.float()) for k, v in average.items())
