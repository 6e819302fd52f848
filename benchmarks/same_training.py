"""Does a change leave training bit-identical? Train the first N steps of a recipe with two code trees (e.g. a
checkout of an older commit and this one), one thread each, and compare digests of the tokenizer and the final
weights. Equal digests mean the same batches, tokenizer, initialisation and updates, so the same model as far as
the run goes.

    git worktree add /tmp/old <commit>
    python -m benchmarks.same_training /tmp/old . --steps 40 [--overrides experiment=multi30k_cpu]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r'''
import hashlib, json, sys
from pathlib import Path
root, run_dir, steps, overrides = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
sys.path.insert(0, str(root))
import torch
torch.set_num_threads(1)
import lightning as L
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict
try:
    import seq2seq.config  # noqa: F401  (trees that have typed configs register them)
except ImportError:
    pass
try:
    from seq2seq.training.train import make_trainer, new_module, shared_tokenizer
except ModuleNotFoundError:  # trees before the seq2seq/training/ package (2764698 and older)
    from seq2seq.train import make_trainer, new_module, shared_tokenizer
extra = [f"data.cache_dir={run_dir / 'cache'}"] if (root / "seq2seq/data/cache.py").exists() else []
with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
    cfg = compose("train", [f"paths.run_dir={run_dir}", f"data.source.path={root.resolve().parent / 'shared/data/multi30k'}",
                            *overrides, f"++trainer.max_steps={steps}", "trainer.max_time=null",
                            "++trainer.limit_val_batches=0", "trainer.enable_progress_bar=false",
                            "trainer.enable_model_summary=false", *extra])
with open_dict(cfg):
    cfg.callbacks, cfg.logger = {}, {}
L.seed_everything(cfg.seed, workers=True)
trainer = make_trainer(cfg)
datamodule = instantiate(cfg.data)
tokenizer = shared_tokenizer(datamodule, run_dir / "tokenizer", 0)
module = new_module(cfg, tokenizer)
trainer.fit(module, datamodule)
weights = hashlib.sha256()
for key, value in sorted(module.model.state_dict().items()):
    weights.update(key.encode() + value.float().numpy().tobytes())
print("RESULT " + json.dumps({"tokenizer": hashlib.sha256(tokenizer.src_model).hexdigest()[:16],
                              "weights": weights.hexdigest()[:16], "steps": trainer.global_step}))
'''


def run(tree: Path, steps: int, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as run_dir:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        done = subprocess.run([sys.executable, "-c", WORKER, str(tree.resolve()), run_dir, str(steps), json.dumps(overrides)],
                              cwd=run_dir, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: training with {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs=2, type=Path)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--overrides", nargs="*", default=["experiment=multi30k_cpu"])
    args = parser.parse_args()
    results = [run(tree, args.steps, args.overrides) for tree in args.trees]
    for tree, r in zip(args.trees, results):
        print(f"{str(tree):40s} tokenizer {r['tokenizer']}  weights after {r['steps']} steps {r['weights']}")
    same = results[0] == results[1]
    print("identical" if same else "DIFFERENT")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
