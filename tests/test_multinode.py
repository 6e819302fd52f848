"""Two nodes for real on this machine's loopback: two launchers, each in its own session as on its own machine,
meeting over 127.0.0.1 with gloo, sharing one run folder (the shared file system). Started by torchrun
(--nnodes=2, --node_rank 0 and 1) and with the variables srun sets for 2 nodes x 1 task, one CPU process per
node; by Lightning's own launcher with NODE_RANK, two per node."""
import csv
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONF, MULTI30K, ROOT, checkpoint, compose_config, script_env
from seq2seq.training.lock import RunLock
from seq2seq.training.ranks import RankZeroHydraFiles, rank_log, started_as_rank_zero
from seq2seq.training.train import train
from seq2seq.training.validate import validate
from test_ddp import RUN, datamodule

NODE_TIMEOUT_S = 300
# what global rank 0 writes into the run folder (data_cache: the tests put the cache there)
RUN_FILES = {".hydra", ".lock", "checkpoints", "curves.png", "data_cache", "logs", "model.pt", "test.hyp", "tokenizer",
             "train.log"}


def free_port(ports: Iterable[int]) -> int:
    """The first of `ports` that nothing on this machine listens on."""
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port")


def train_args(run_dir: Path, devices: int = 1) -> list[str]:
    """scripts/train.py's overrides for one epoch on 2 nodes of `devices` processes, into the shared `run_dir`."""
    return ["trainer=ddp_cpu", "trainer.num_nodes=2", f"trainer.devices={devices}", *RUN, "trainer.max_epochs=1",
            f"data.source.path={MULTI30K}", f"data.cache_dir={run_dir / 'data_cache'}", f"hydra.run.dir={run_dir}"]


def run_nodes(nodes: list[tuple[list[str], dict[str, str]]], status: int = 0, timeout: float = NODE_TIMEOUT_S) -> list[str]:
    """Start each (command, environment variables) in a session of its own, as on its own machine, and wait for
    all to end with exit `status`; their outputs (stdout + stderr). Sessions left after `timeout` are ended."""
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=script_env(**env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True) for cmd, env in nodes]
    try:
        outputs = [proc.communicate(timeout=timeout)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for proc, out in zip(procs, outputs):
        assert proc.returncode == status, out[-4000:]
    return outputs


def check_own_files(run_dir: Path, world: int) -> int:
    """Every rank wrote only its own files: rank 0 those of the run (RUN_FILES), rank N > 0 its log
    train_rank<N>.log alone, and each log holds its own rank's lines only. Returns the global step at which
    all ranks' fit ended, by each rank's own record."""
    assert {p.name for p in run_dir.iterdir()} == RUN_FILES | {f"train_rank{rank}.log" for rank in range(1, world)}
    assert [p.relative_to(run_dir) for p in run_dir.rglob("*.pt")] == [Path("model.pt")]
    steps = []
    for rank in range(world):
        text = (run_dir / (f"train_rank{rank}.log" if rank else "train.log")).read_text()
        ranks = {n for groups in re.findall(r"GLOBAL_RANK: (\d+)|\[rank: (\d+)\]|rank (\d+): ", text) for n in groups if n}
        assert ranks == {str(rank)} and ("model file" in text) == (rank == 0), (rank, ranks)
        steps += re.findall(r"rank \d+: fit ended at global step (\d+)\n", text)
    assert len(steps) == world and len(set(steps)) == 1
    return int(steps[0])


def check_two_node_run(run_dir: Path, outputs: list[str], tmp_path: Path) -> None:
    """What a run of one epoch on two nodes must leave, and that one process scores and resumes it alike."""
    node0, node1 = outputs
    # global rank 0 alone trained the tokenizer and encoded the corpus (train and val; test once more)
    assert node0.count("training SentencePiece") == 1 and node0.count("encoding 2000 sentence pairs") == 1
    assert "training SentencePiece" not in node1 and "encoding" not in node1
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in node1

    # rank 0's files intact, and both ranks ended at the step the checkpoint holds
    step = check_own_files(run_dir, world=2)
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    assert overrides == train_args(run_dir)[:-1]  # hydra.run.dir is Hydra's own, not a task override
    last = run_dir / "checkpoints" / "last.ckpt"
    before = checkpoint(last)
    assert before["epoch"] == 0 and before["global_step"] == step > 0

    # the final checkpoint's validation BLEU from both nodes equals one process's validation of it
    with open(run_dir / "logs" / "metrics.csv") as f:
        logged = [float(row["val/bleu"]) for row in csv.DictReader(f) if row["val/bleu"]]
    single = validate(compose_config("validate", ["data.eval_limit=100", "data.eval_max_tokens=600", f"model_file={last}",
                                                  "trainer.enable_progress_bar=false",
                                                  "trainer.enable_model_summary=false"], tmp_path / "single"))
    assert single["val/bleu"] > 0 and logged == [single["val/bleu"]]

    # one process resumes the run in its folder and trains the whole second epoch
    train(compose_config("train", [*RUN, "trainer.max_epochs=2", "resume=true"], run_dir))
    after = checkpoint(last)
    assert after["epoch"] == 1
    assert after["global_step"] == step + len(datamodule(run_dir, "fit").train_dataloader())


@pytest.mark.slow
def test_two_nodes_by_torchrun(tmp_path):
    run_dir = tmp_path / "run"
    port = free_port(range(29500, 30000))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                "--master_addr=127.0.0.1", f"--master_port={port}"]
    outputs = run_nodes([([*torchrun, f"--node_rank={node}", "scripts/train.py", *train_args(run_dir)], {})
                         for node in (0, 1)])
    check_two_node_run(run_dir, outputs, tmp_path)


def srun_tasks(cmd: list[str]) -> list[tuple[list[str], dict[str, str]]]:
    """`cmd` with what srun sets for each task of 2 nodes x 1 task. Lightning's SLURMEnvironment takes the node
    list's first name as the main address and port 15000 + the job id's last 4 digits (no MASTER_PORT set):
    the job id is one whose port is free."""
    job_id = str(free_port(range(15000 + 4711, 25000)) - 15000)
    nodelist = "127.0.0.1,127.0.0.2"  # two loopback addresses: the job's two nodes
    job = {"SLURM_JOB_ID": job_id, "SLURM_JOB_NAME": "train", "SLURM_NNODES": "2", "SLURM_NTASKS": "2",
           "SLURM_NTASKS_PER_NODE": "1", "SLURM_LOCALID": "0", "SLURM_NODELIST": nodelist, "SLURM_JOB_NODELIST": nodelist}
    return [(cmd, {**job, "SLURM_PROCID": str(node), "SLURM_NODEID": str(node)}) for node in (0, 1)]


@pytest.mark.slow
def test_two_nodes_by_slurm_variables(tmp_path):
    run_dir = tmp_path / "run"
    outputs = run_nodes(srun_tasks([sys.executable, "scripts/train.py", *train_args(run_dir)]))
    assert "SLURM auto-requeueing enabled" in outputs[0]  # Lightning took the ranks from SLURMEnvironment
    check_two_node_run(run_dir, outputs, tmp_path)


@pytest.mark.slow
def test_two_nodes_end_together_when_rank_zero_is_refused_the_run_folder(tmp_path):
    """Another run holds the folder: rank 0 is refused it, and rank 1 (srun's, no launcher to end it) ends with
    rank 0's message at once instead of waiting for it at the first collective (30 minutes)."""
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        outputs = run_nodes(srun_tasks([sys.executable, "scripts/train.py", *train_args(run_dir)]), status=2, timeout=120)
    refused = outputs[0].split("error: ")[1].strip()
    assert "is in use by another training run" in refused and f"error: rank 1: rank 0 stopped: {refused}" in outputs[1]


@pytest.mark.slow
def test_two_nodes_by_lightnings_launcher(tmp_path):
    """NODE_RANK set by hand on each node, Lightning starts each node's second process: global ranks 0 to 3,
    local ranks 0 and 1 on both nodes."""
    run_dir = tmp_path / "run"
    main = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port(range(29500, 30000)))}
    run_nodes([([sys.executable, "scripts/train.py", *train_args(run_dir, devices=2)], {**main, "NODE_RANK": str(node)})
               for node in (0, 1)])
    assert check_own_files(run_dir, world=4) == checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"]


@pytest.mark.parametrize(("environ", "zero"), [
    ({}, True), ({"RANK": "0", "GROUP_RANK": "0", "LOCAL_RANK": "0"}, True), ({"SLURM_PROCID": "0"}, True),
    ({"RANK": "1", "GROUP_RANK": "1", "LOCAL_RANK": "0"}, False),  # torchrun, node 1
    ({"SLURM_PROCID": "1", "SLURM_LOCALID": "0"}, False),  # srun, node 1
    ({"LOCAL_RANK": "1"}, False),  # Lightning's launcher, its second process
    ({"NODE_RANK": "1"}, False),  # Lightning's launcher on node 1, before it starts the node's other processes
])
def test_rank_zero_is_known_before_the_trainer(environ, zero):
    assert started_as_rank_zero(environ) is zero


def test_other_ranks_write_no_hydra_files(monkeypatch):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):  # Hydra's default job logging
        cfg = compose("train", return_hydra_config=True)
    OmegaConf.set_readonly(cfg.hydra, True)  # as Hydra hands it over
    RankZeroHydraFiles().on_run_start(cfg)
    assert cfg.hydra.output_subdir == ".hydra" and "file" in cfg.hydra.job_logging.handlers  # rank 0: all of them

    monkeypatch.setenv("RANK", "1")
    RankZeroHydraFiles().on_run_start(cfg)
    assert cfg.hydra.output_subdir is None
    assert list(cfg.hydra.job_logging.handlers) == ["console"] and cfg.hydra.job_logging.root.handlers == ["console"]


def test_ranks_above_zero_log_into_their_own_file(tmp_path, caplog):
    log = logging.getLogger("seq2seq.test")
    with rank_log(tmp_path, "train", 0), caplog.at_level(logging.INFO):
        log.info("rank 0 logs where Hydra points it")
    with rank_log(tmp_path, "train", 3), caplog.at_level(logging.INFO):
        log.info("rank 3 logs here")
    log.warning("after the run: not in the file")
    assert [p.name for p in tmp_path.iterdir()] == ["train_rank3.log"]
    lines = (tmp_path / "train_rank3.log").read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith("rank 3 logs here")
