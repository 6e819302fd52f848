"""Load test of scripts/serve.py on loopback: latency percentiles and sentences/s at 1, 8 and 32 clients.

    python -m benchmarks.loadtest model_file=runs/X/model.pt [clients=[1,8,32]] [beam_size=5]   (conf/benchmarks/loadtest.yaml)

Starts the real server on a free 127.0.0.1 port, then, for each number of concurrent clients, keeps that
many requests of `lines_per_request` test sentences in flight until `requests` have been answered or
`max_seconds` have passed (whichever comes first: the run is bounded). Reports p50/p95/p99 latency,
sentences/s and failed requests, beside translate.py's sentences/s on the same lines with the same
model and settings (the Translator in this process, as translate.py runs it, start-up excluded),
measured before and after the server's levels (their mean is the reference: the machine may drift).

    python -m benchmarks.loadtest model_file=... soak_minutes=10 soak_clients=32

is a soak instead: that many async clients in this one process (light beside the server on a small
machine) for that many minutes, reported per minute: p50/p99 latency and the resident memory summed
over the server's processes.
"""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from benchmarks.meter import machine, publish
from seq2seq.config import TranslatorConfig
from seq2seq.inference.translator import Translator

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: bytes | dict | None = None, timeout: float = 300,
         headers: dict | None = None) -> tuple[int, dict | str]:
    """(status, JSON answer or text) of a GET (body None) or a JSON POST."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def start_server(overrides: list[str], log: Path, threads: int | None = None, wait: float = 300,
                 env: dict | None = None, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """`python scripts/serve.py overrides... port=<port or a free one> host=127.0.0.1` (its own session) and its
    URL, once GET /health answers 200; `env` is added to this process's environment."""
    port = port or free_port()
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}), **(env or {})}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "scripts/serve.py", *overrides, f"port={port}", "host=127.0.0.1"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_server(process)
            raise RuntimeError(f"the server did not come up:\n{log.read_text()[-3000:]}")
        try:
            if call(f"{url}/health", timeout=5)[0] == 200:
                return process, url
        except OSError:  # not listening yet
            pass
        time.sleep(0.5)


def stop_server(process: subprocess.Popen, wait: float = 60) -> int:
    """SIGTERM to the main process (which drains and stops its children), SIGKILL to its session after
    `wait` seconds; the exit status."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


@contextmanager
def running_server(overrides: list[str], log: Path, threads: int | None = None, wait: float = 300,
                   env: dict | None = None) -> Iterator[str]:
    """start_server's URL until the block ends; the server is stopped afterwards."""
    process, url = start_server(overrides, log, threads, wait, env)
    try:
        yield url
    finally:
        stop_server(process)


def children(pid: int) -> list[int]:
    """The process's children (Linux)."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def service_processes(pid: int, port: int) -> dict[str, list[int]]:
    """The server's processes by kind: main, HTTP (those holding the listening socket), inference worker
    (spawned), queue process (LitServe's multiprocessing manager), and multiprocessing's resource tracker."""
    listening = {line.split()[9] for name in ("tcp", "tcp6") for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]
                 if line.split()[3] == "0A" and int(line.split()[1].rsplit(":", 1)[1], 16) == port}
    kinds: dict[str, list[int]] = {"main": [pid]}
    for child in children(pid):
        try:
            cmdline, sockets = Path(f"/proc/{child}/cmdline").read_bytes(), _descriptors(child)
        except OSError:  # it ended meanwhile
            continue
        kind = "resource tracker" if b"resource_tracker" in cmdline else "inference worker" if b"spawn_main" in cmdline \
            else "HTTP" if {f"socket:[{inode}]" for inode in listening} & sockets else "queue process"
        kinds.setdefault(kind, []).append(child)
    return kinds


def _descriptors(pid: int) -> set[str]:
    """What the process's file descriptors point at ("socket:[inode]", paths); those closed meanwhile skipped."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return found


def rss_bytes(pids: list[int]) -> int:
    """Resident memory summed over the processes (those still there)."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total


async def request(port: int, path: str, body: bytes | None = None, headers: dict | None = None,
                  timeout: float = 300) -> tuple[int, bytes]:
    """One HTTP/1.1 request to 127.0.0.1:port on a connection of its own, with asyncio streams (a light client:
    thousands in flight in one process); (status, body). Raises OSError when the connection fails and
    TimeoutError when no complete answer came within `timeout` seconds."""
    async def exchange() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            head = [f"{'GET' if body is None else 'POST'} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}",
                    "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
            if body is not None:  # a Content-Length in `headers` (announcing more than is sent) stands
                head += ["Content-Type: application/json", *([] if "Content-Length" in (headers or {}) else
                                                              [f"Content-Length: {len(body)}"])]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))  # sent while we read
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionResetError("the connection closed before a status line")
            answer = await reader.read()
            return int(status_line.split()[1]), answer.partition(b"\r\n\r\n")[2]
        finally:
            writer.close()
    return await asyncio.wait_for(exchange(), timeout)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def load(url: str, lines: list[str], clients: int, requests: int, lines_per_request: int, max_seconds: float,
         body: dict) -> dict:
    """`clients` threads, each sending its next request as soon as the previous one is answered."""
    latencies, failures, sentences, lock = [], [], 0, threading.Lock()
    issued, start = 0, time.perf_counter()

    def client() -> None:
        nonlocal issued, sentences
        while True:
            with lock:
                if issued >= requests or time.perf_counter() - start > max_seconds:
                    return
                first = issued * lines_per_request % len(lines)
                issued += 1
            text = (lines * 2)[first : first + lines_per_request]
            t0 = time.perf_counter()
            try:
                status, answer = call(f"{url}/translate", {"text": text, **body})
                ok = status == 200 and len(answer["translations"]) == len(text)
            except Exception as e:  # a failed request is counted, not fatal
                status, ok = repr(e), False
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - t0)
                    sentences += len(text)
                else:
                    failures.append(status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    return {"clients": clients, "requests": len(latencies) + len(failures), "failed": len(failures),
            "failures": failures[:5], "sentences": sentences, "seconds": seconds, "sents_s": sentences / seconds,
            **{f"p{q}_ms": 1000 * percentile(latencies, q) for q in (50, 95, 99)}}


async def soak(port: int, pid: int, lines: list[str], clients: int, minutes: int, lines_per_request: int) -> list[dict]:
    """`clients` async clients, each sending its next request as soon as the previous one is answered, for
    `minutes`; per minute: requests, failed, p50/p99 latency of those answered 200, and the resident memory
    summed over the server's processes (mean of samples every 5 s)."""
    start, stats = time.monotonic(), [{"latencies": [], "failed": 0, "rss": []} for _ in range(minutes)]

    def minute() -> int:
        return int((time.monotonic() - start) // 60)

    async def client(first: int) -> None:
        while (m := minute()) < minutes:
            text = (lines * 2)[first : first + lines_per_request]
            first = (first + clients * lines_per_request) % len(lines)
            t0 = time.monotonic()
            try:
                status, answer = await request(port, "/translate", json.dumps({"text": text}).encode())
                ok = status == 200 and len(json.loads(answer)["translations"]) == len(text)
            except (OSError, TimeoutError, ValueError):
                ok = False
            if ok:
                stats[m]["latencies"].append(time.monotonic() - t0)
            else:
                stats[m]["failed"] += 1

    async def sample() -> None:
        while (m := minute()) < minutes:
            kinds = service_processes(pid, port)
            stats[m]["rss"].append(rss_bytes([p for pids in kinds.values() for p in pids]))
            await asyncio.sleep(5)

    await asyncio.gather(sample(), *(client(i * lines_per_request % len(lines)) for i in range(clients)))
    return [{"minute": m + 1, "requests": len(s["latencies"]) + s["failed"], "failed": s["failed"],
             "p50_ms": 1000 * percentile(s["latencies"], 50), "p99_ms": 1000 * percentile(s["latencies"], 99),
             "rss_mib": sum(s["rss"]) / len(s["rss"]) / 2**20} for m, s in enumerate(stats)]


def translate_rate(options: dict, lines: list[str]) -> float:
    """Sentences/s of the Translator as translate.py runs it (one call over all lines, after a warm-up)."""
    translator = Translator.from_options(options)
    translator.translate(lines[:16])
    start = time.perf_counter()
    translator.translate(lines)
    return len(lines) / (time.perf_counter() - start)


def run(cfg: DictConfig) -> dict:
    lines = list(instantiate(cfg.data).load(cfg.split)["src"])[: cfg.max_lines_used]
    options = {k: v for k, v in TranslatorConfig.options(OmegaConf.to_container(cfg)).items() if k != "n_best"}
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model_file = options["model_file"]
    model_arg = f"[{','.join(model_file)}]" if isinstance(model_file, list) else model_file
    server = [f"model_file={model_arg}", *(f"{k}={v}" for k, v in options.items() if k != "model_file" and v is not None),
              f"max_batch_size={cfg.max_batch_size}", f"batch_timeout={cfg.batch_timeout}",
              f"max_lines={cfg.lines_per_request}", *([f"threads={cfg.threads}"] if cfg.threads else [])]
    results = {"machine": machine(), "lines": len(lines), "lines_per_request": cfg.lines_per_request,
               "server": server, "levels": []}
    if cfg.soak_minutes:
        process, url = start_server(server, Path(cfg.log), cfg.threads)
        try:
            load(url, lines, 2, 4, cfg.lines_per_request, 60, {})  # warm-up
            port = int(url.rsplit(":", 1)[1])
            results["soak"] = asyncio.run(soak(port, process.pid, lines, cfg.soak_clients, cfg.soak_minutes,
                                               cfg.lines_per_request))
        finally:
            results["exit_status"] = stop_server(process)
        return results
    before = translate_rate(options, lines)  # measured before and after the server's levels: the mean
    with running_server(server, Path(cfg.log), cfg.threads) as url:
        load(url, lines, 2, 4, cfg.lines_per_request, 60, {})  # warm-up
        for clients in cfg.clients:
            level = load(url, lines, clients, max(cfg.requests, clients * 2), cfg.lines_per_request, cfg.max_seconds, {})
            results["levels"].append(level)
            print(f"{clients} clients: {level['sents_s']:.1f} sents/s, {level['failed']} failed", file=sys.stderr)
    results["translate_sents_s_before_after"] = [before, translate_rate(options, lines)]
    results["translate_sents_s"] = sum(results["translate_sents_s_before_after"]) / 2
    return results


def table(results: dict) -> str:
    if "soak" in results:
        return soak_table(results)
    rate = results["translate_sents_s"]
    lines = [f"# {results['machine']}; {results['lines_per_request']} lines per request",
             f"{'clients':>7s} {'requests':>8s} {'failed':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s} "
             f"{'sents/s':>8s} {'x translate.py':>14s}"]
    for r in results["levels"]:
        lines.append(f"{r['clients']:7d} {r['requests']:8d} {r['failed']:6d} {r['p50_ms']:8.0f} {r['p95_ms']:8.0f} "
                     f"{r['p99_ms']:8.0f} {r['sents_s']:8.1f} {r['sents_s'] / rate:13.2f}x")
    before, after = results["translate_sents_s_before_after"]
    lines.append(f"translate.py (same model, settings and lines): {rate:.1f} sents/s (before {before:.1f}, after {after:.1f})")
    return "\n".join(lines)


def soak_table(results: dict) -> str:
    rows = results["soak"]
    lines = [f"# {results['machine']}; {results['lines_per_request']} lines per request; one async client process",
             f"{'minute':>6s} {'requests':>8s} {'failed':>6s} {'p50 ms':>8s} {'p99 ms':>8s} {'RSS MiB':>8s}"]
    lines += [f"{r['minute']:6d} {r['requests']:8d} {r['failed']:6d} {r['p50_ms']:8.0f} {r['p99_ms']:8.0f} "
              f"{r['rss_mib']:8.1f}" for r in rows]
    if len(rows) >= 2:
        lines.append(f"last minute's p99 / second minute's: {rows[-1]['p99_ms'] / rows[1]['p99_ms']:.2f} (at most 1.5); "
                     f"memory growth, last minute / first: {rows[-1]['rss_mib'] / rows[0]['rss_mib'] - 1:+.1%} "
                     f"(at most +10%); server exit status {results['exit_status']}")
    return "\n".join(lines)


@dataclass
class LoadTestConfig(TranslatorConfig):
    """conf/benchmarks/loadtest.yaml: the server's translator options, and the load."""
    split: str = "test"                       # the data split whose sources the requests carry
    seed: int = 0                             # the data config reads it (no effect on translation)
    max_lines_used: int = 1000                # test sentences the requests cycle through (and translate.py's set)
    clients: list[int] = field(default_factory=lambda: [1, 8, 32])  # levels of concurrency
    requests: int = 96                        # answered requests per level (at least 2 x clients)
    max_seconds: float = 120                  # per level
    lines_per_request: int = 8
    max_batch_size: int = 32                  # the server's dynamic batching (ServeConfig)
    batch_timeout: float = 0.05
    threads: int | None = None                # torch threads of the server's worker and of the translate.py comparison
    soak_minutes: int = 0                     # > 0: instead of the levels, this many minutes at soak_clients, per minute
    soak_clients: int = 32
    work_dir: str = "${hydra:runtime.output_dir}"
    log: str = "${work_dir}/server.log"
    output: str = "${work_dir}/loadtest.json"
    data: Any = None


ConfigStore.instance().store(name="loadtest_schema", node=LoadTestConfig)


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmarks/loadtest")  # /data: conf/
def main(cfg: DictConfig) -> None:
    publish(run(cfg), table, cfg.output)


if __name__ == "__main__":
    main()
