"""Load test of scripts/serve.py on loopback: latency percentiles and sentences/s at 1, 8 and 32 clients.

    python -m benchmarks.loadtest model_file=runs/X/model.pt [clients=[1,8,32]] [beam_size=5]   (conf/benchmarks/loadtest.yaml)

Starts the real server on a free 127.0.0.1 port, then, for each number of concurrent clients, keeps that
many requests of `lines_per_request` test sentences in flight until `requests` have been answered or
`max_seconds` have passed (whichever comes first: the run is bounded). Reports p50/p95/p99 latency,
sentences/s and failed requests, beside translate.py's sentences/s on the same lines with the same
model and settings (the Translator in this process, as translate.py runs it, start-up excluded),
measured before and after the server's levels (their mean is the reference: the machine may drift).
"""
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
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import seq2seq.config  # noqa: F401  (registers the typed configs with Hydra)
from benchmarks.meter import machine, publish
from seq2seq.config import TranslatorConfig
from seq2seq.inference.translator import Translator

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: bytes | dict | None = None, timeout: float = 300) -> tuple[int, dict | str]:
    """(status, JSON answer or text) of a GET (body None) or a JSON POST."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


@contextmanager
def running_server(overrides: list[str], log: Path, threads: int | None = None, wait: float = 300) -> Iterator[str]:
    """`python scripts/serve.py overrides... port=<free> host=127.0.0.1` until the block ends; its URL once
    GET /health answers 200. The server and its workers (one process group) are stopped afterwards."""
    port = free_port()
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "scripts/serve.py", *overrides, f"port={port}", "host=127.0.0.1"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not come up:\n{log.read_text()[-3000:]}")
            try:
                if call(f"{url}/health", timeout=5)[0] == 200:
                    break
            except OSError:  # not listening yet
                pass
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def percentile(values: list[float], q: float) -> float:
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


@hydra.main(version_base="1.3", config_path="../conf/benchmarks", config_name="loadtest")
def main(cfg: DictConfig) -> None:
    publish(run(cfg), table, cfg.output)


if __name__ == "__main__":
    main()
