from pathlib import Path


def test_training_run_writes_a_model_file_and_scores(trained_run):
    assert Path(trained_run["model_file"]).is_file()
    assert 0 <= trained_run["test/bleu"] <= 100
    assert (trained_run["run_dir"] / "checkpoints" / "last.ckpt").is_file()
