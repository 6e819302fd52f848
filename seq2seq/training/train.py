"""One training run from a composed Hydra config: fit, write the model file, test it with beam search.

Data-parallel runs (``trainer=ddp``) execute this once per process: Lightning's launcher re-runs the
script for ranks > 0 (same ``hydra.run.dir``), torchrun and SLURM start every rank themselves. Rank 0
alone trains the tokenizer and writes files; the other ranks wait for its tokenizer and read it, and each
writes only its own log (seq2seq.training.ranks).
"""
import logging
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from datasets import Dataset
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from seq2seq import modelfile
from seq2seq.atomic_files import RunError
from seq2seq.cli import tidy_logging
from seq2seq.config import ConfigError, DecodingConfig, ModelConfig, from_dict
from seq2seq.data.tokenizer import Tokenizer
from seq2seq.evaluation import corpus_scores, literature_bleu
from seq2seq.inference.translator import Translator
from seq2seq.training.builders import check_settings, instantiate_group, make_trainer
from seq2seq.training.callbacks import Interrupted, SaveOnSignal
from seq2seq.training.datamodule import TranslationDataModule
from seq2seq.training.lightning_module import TranslationModule
from seq2seq.training.lock import Heartbeat, RunLock
from seq2seq.training.ranks import rank_log

log = logging.getLogger(__name__)

TOKENIZER_WAIT_S = 3600.0  # how long ranks > 0 wait for rank 0 to train the tokenizer
RANK0_SILENT_S = 120.0  # ranks > 0 give up when rank 0's heartbeat (seq2seq.training.lock) stops for this long


def train(cfg: DictConfig) -> dict:
    """Returns {"test/bleu", "test/chrf", "test/bleu_lit", "test/loss", "test/ppl", "model_file", "val/bleu"
    (the best validation BLEU, when validation ran)}; test/bleu_lit on global rank 0 only.

    SIGINT/SIGTERM while fitting saves checkpoints/last.ckpt and exits with status 128 + signal number.
    """
    tidy_logging()
    check_settings(cfg)  # every setting, before any work is done
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.paths.run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    stop = SaveOnSignal(last)
    trainer = make_trainer(cfg, [stop])  # first: it knows this process's global rank
    with ExitStack() as held:
        held.enter_context(rank_log(run_dir, "train", trainer.global_rank))
        lock_run_folder(trainer, run_dir, held)
        try:
            return fit_and_test(cfg, trainer, run_dir, stop)
        except Interrupted as e:
            end_local_ranks(trainer, kill=False)
            if trainer.is_global_zero:
                print(f"interrupted: {e}; continue with resume=true hydra.run.dir={run_dir}", file=sys.stderr)
            raise SystemExit(128 + e.signum) from None
        except BaseException:
            end_local_ranks(trainer, kill=True)  # none waits for rank 0 at a collective until it times out
            raise


def lock_run_folder(trainer: L.Trainer, run_dir: Path, held: ExitStack) -> None:
    """Global rank 0 holds the run folder's RunLock while `held` lasts; ranks > 0 share rank 0's folder.

    Ranks started by a launcher (torchrun, srun: not Lightning's LightningEnvironment) first meet in their
    process group and learn whether rank 0 got the folder, all ending with its RunError if not. Else, rank 0
    refused a folder in use, the others would wait for it: at their first collective until its timeout
    (30 minutes), or for its tokenizer for as long as the other run's heartbeat lasts. Lightning's own
    launcher starts the other processes only in fit, after rank 0 holds the lock.
    """
    meet = trainer.world_size > 1 and not isinstance(trainer.strategy.cluster_environment, LightningEnvironment)
    error = None
    if trainer.is_global_zero:
        try:
            held.enter_context(RunLock(run_dir))
        except RunError as e:
            if not meet:
                raise
            error = str(e)
    if meet:
        trainer.strategy.setup_environment()  # the process group fit would set up (it keeps this one)
        error = trainer.strategy.broadcast(error)
        if error is not None and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # else its threads can abort the exit (SIGABRT, not status 2)
    if error is not None:
        raise RunError(error if trainer.is_global_zero else f"rank {trainer.global_rank}: rank 0 stopped: {error}")


def fit_and_test(cfg: DictConfig, trainer: L.Trainer, run_dir: Path, stop: SaveOnSignal) -> dict:
    last = stop.path
    datamodule: TranslationDataModule = instantiate_group(cfg.data, "data")
    model_cfg = None  # the configured model
    if cfg.resume and not last.exists():
        raise RunError(f"resume=true but {last} does not exist (set hydra.run.dir to the run to resume)")
    if cfg.resume or cfg.init_from:  # weights to start from: their tokenizer and model settings too
        source, label = (last, "resume=true") if cfg.resume else (Path(cfg.init_from), f"init_from={cfg.init_from}")
        contents = stored_contents(source, label)
        datamodule.tokenizer = stored_tokenizer(contents, source, run_dir / "tokenizer", trainer.global_rank)
        model_cfg = stored_model_settings(OmegaConf.to_container(cfg.model, resolve=True), contents["model"],
                                          command_line(), label)
    else:
        shared_tokenizer(datamodule, run_dir / "tokenizer", trainer.global_rank)
    module = new_module(cfg, datamodule.tokenizer, model_cfg)
    if cfg.init_from:
        modelfile.load_weights(module.model, datamodule.tokenizer, contents["state_dict"], cfg.init_from)
        log.info("fine-tuning %s: its weights, tokenizer and model settings, a new optimizer and schedule",
                 cfg.init_from)
    trainer.fit(module, datamodule, ckpt_path=str(last) if cfg.resume else None)
    log.info("rank %d: fit ended at global step %d", trainer.global_rank, trainer.global_step)  # each rank's record
    if trainer.strategy.reduce_boolean_decision(stop.pending, all=False):  # a signal in the last batch
        trainer.save_checkpoint(last)
        raise Interrupted(stop.signum or signal.SIGTERM, trainer.global_step, last)

    model_file = run_dir / "model.pt"
    if trainer.is_global_zero:
        write_model_file(module, best_checkpoints(trainer, cfg.average_checkpoints), model_file)
        if cfg.get("tune_alpha"):
            tune_alpha(model_file, datamodule.load("val"), list(cfg.tune_alpha), datamodule.tgt_lang, str(module.device))
    trainer.strategy.barrier()
    contents = modelfile.read_contents(model_file)
    module.model.load_state_dict(contents["state_dict"])
    module.decoding = from_dict(DecodingConfig, contents["decoding"], f"{model_file}: decoding")
    module.hypothesis_file = run_dir / "test.hyp"
    results = {**trainer.test(module, datamodule, verbose=False)[0], "model_file": str(model_file)}
    if trainer.is_global_zero:  # the literature's BLEU of the hypotheses just written (rank 0 wrote them)
        hyps = module.hypothesis_file.read_text(encoding="utf-8").splitlines()
        refs = list(datamodule.load("test")["tgt"])
        results["test/bleu_lit"] = literature_bleu(hyps, refs, datamodule.tgt_lang)
    ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    if ckpt is not None and ckpt.monitor == "val/bleu" and ckpt.best_model_score is not None:
        results["val/bleu"] = float(ckpt.best_model_score)  # the best validation BLEU: what a sweep optimises
    return results


def tune_alpha(model_file: Path, val: Dataset, alphas: list[float], lang: str, device: str) -> float:
    """The length penalty (of `alphas`) whose beam search gives the best val BLEU (ties: the first listed),
    stored in the model file as its decoding default: translate.py, evaluate.py and the test use it."""
    translator = Translator.load(str(model_file), device=device)
    srcs, refs = list(val["src"]), list(val["tgt"])
    bleu = {a: corpus_scores(translator.using(alpha=a).translate(srcs), refs, ("bleu",), lang)["bleu"] for a in alphas}
    best = max(alphas, key=lambda a: bleu[a])
    log.info("length penalty on val (beam %d): %s -> alpha %g", translator.beam_size,
             ", ".join(f"alpha {a:g} BLEU {b:.2f}" for a, b in bleu.items()), best)
    modelfile.set_decoding(model_file, alpha=best)
    return best


def stored_contents(source: Path, label: str) -> dict:
    """The contents of the model file or checkpoint a run starts from; errors name the setting (`label`)."""
    try:
        return modelfile.read_contents(source)
    except modelfile.ModelFileError as e:
        raise modelfile.ModelFileError(f"{label}: {e}") from None


def stored_tokenizer(contents: dict, source: Path, folder: Path, rank: int) -> Tokenizer:
    """The tokenizer stored with the weights a run starts from (the checkpoint resumed, init_from's file): the
    weights were trained with that one, whatever the run folder holds now. Rank 0 puts it in `folder` (with a
    warning when the copy there differs)."""
    tokenizer = Tokenizer.from_state(contents["tokenizer"])
    if rank == 0:
        saved = Tokenizer.load(folder)
        if saved is None or saved.state() != tokenizer.state():
            if saved is not None:
                log.warning("%s differs from the tokenizer stored in %s: using the latter, saved over it",
                            folder, source)
                shutil.rmtree(folder)  # no file of the other one may stay (a target model beside a joint one)
            tokenizer.save(folder)
    return tokenizer


def command_line() -> list[str]:
    """This run's command-line overrides, as Hydra parsed them ([] when train() is called without Hydra)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def stored_model_settings(configured: dict, stored: dict, overrides: list[str], label: str) -> dict:
    """The model settings of a run that starts from stored weights (`label`: init_from=... or resume=true):
    theirs, `stored`. Each model setting the command line gives (``model.KEY=...``, or every key of a
    ``model=NAME`` group choice) must agree with them; ConfigError naming those that do not."""
    stored = asdict(from_dict(ModelConfig, stored, f"{label}: model"))
    given: set[str] = set()
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key == "model":
            given |= set(stored)
        elif key.startswith("model."):
            given.add(key.split(".")[1])
    clash = [f"model.{k}={configured.get(k)!r} (it has {stored[k]!r})" for k in sorted(given & set(stored))
             if configured.get(k) != stored[k]]
    if clash:
        raise ConfigError(f"{label} keeps the model settings of its weights; the command line contradicts them: "
                          f"{', '.join(clash)}")
    replaced = [f"model.{k}={stored[k]!r}" for k in sorted(stored) if configured.get(k) != stored[k]]
    if replaced:
        log.info("%s: model settings of the weights, not the configured ones: %s", label, ", ".join(replaced))
    return stored


def end_local_ranks(trainer: L.Trainer, kill: bool) -> None:
    """Rank 0 of a run whose other local ranks Lightning started: wait for them to end (kill: end them now).

    They are taken from the launcher's list first: its watcher SIGKILLs this process when one of them exits
    with a non-zero status, which would cut this process's own message and exit status. Under torchrun the
    agent ends the other ranks when one fails; under SLURM use ``srun --kill-on-bad-exit=1``.
    """
    procs: list[subprocess.Popen] = getattr(trainer.strategy.launcher, "procs", None) or []
    if not trainer.is_global_zero or not procs:
        return
    children = procs[:]
    procs.clear()
    for child in children:
        if kill:
            child.send_signal(signal.SIGKILL)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()






def best_checkpoints(trainer: L.Trainer, k: int) -> list[Path]:
    """The top-k checkpoints by the monitored score (val BLEU), best first; [] if none was saved."""
    ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    if ckpt is None:
        return []
    ranked = sorted(ckpt.best_k_models.items(), key=lambda item: float(item[1]), reverse=True)
    return [Path(path) for path, _ in ranked[:k]]


def write_model_file(module: TranslationModule, best: list[Path], path: Path) -> None:
    """The model file from the average of the `best` checkpoints, or from the module's last weights when there
    are none (average_checkpoints=0, or training ended before its first validation)."""
    if best:
        modelfile.write_average(best, path)
        return
    state = {k: v.detach().float().cpu() for k, v in module.model.state_dict().items()}
    modelfile.save(path, module.hparams["model"], state, module.tokenizer.state(), module.hparams["decoding"])
    log.info("model file %s (the last weights: no validated checkpoint to average)", path)




def shared_tokenizer(datamodule: TranslationDataModule, folder: Path, rank: int) -> Tokenizer:
    """Rank 0 loads or trains the run's tokenizer and saves it in `folder`; other ranks wait for it there, and
    give up at once when rank 0's heartbeat (its run-folder lock, seq2seq.training.lock) stops.

    Every rank must see the same `folder`: under torchrun or SLURM set ``hydra.run.dir`` explicitly
    (its default holds the start time, which differs between processes) on a shared file system.
    """
    if rank > 0:
        deadline = time.monotonic() + TOKENIZER_WAIT_S
        heartbeat = Heartbeat(folder.parent)
        if Tokenizer.load(folder) is None:
            log.info("rank %d: waiting for rank 0's tokenizer in %s", rank, folder)
        while Tokenizer.load(folder) is None:
            if heartbeat.silent_s() > RANK0_SILENT_S:
                raise RunError(f"rank {rank}: rank 0 is gone: no tokenizer in {folder} and no heartbeat in "
                               f"{heartbeat.path} for {RANK0_SILENT_S:.0f} s (did rank 0 fail? do all ranks share "
                               f"hydra.run.dir, set explicitly, on a shared file system?)")
            if time.monotonic() > deadline:
                raise RunError(f"rank {rank}: no tokenizer appeared in {folder} within {TOKENIZER_WAIT_S:.0f} s; "
                               f"do all ranks share hydra.run.dir (set it explicitly) on a shared file system?")
            time.sleep(0.5)
    return datamodule.prepare_tokenizer(folder)


def new_module(cfg: DictConfig, tokenizer: Tokenizer, model_cfg: dict | None = None) -> TranslationModule:
    """A freshly initialised module for the configured model (or the settings `model_cfg`), optimizer and decoding."""
    return TranslationModule(model=model_cfg or OmegaConf.to_container(cfg.model, resolve=True), tokenizer=tokenizer.state(),
                             optim=OmegaConf.to_container(cfg.optim, resolve=True), label_smoothing=cfg.label_smoothing,
                             decoding=OmegaConf.to_container(cfg.decoding, resolve=True))
