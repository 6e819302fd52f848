"""scripts/serve.py under faults, on loopback: a killed inference worker or HTTP process, SIGTERM, the API key.

Requests are held in flight deterministically by stopping the inference worker (SIGSTOP) before they are
sent; the waits are generous but bounded, so that a loaded machine slows the tests without failing them.
"""
import os
import signal
import time
import urllib.error
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks.loadtest import call, service_processes, start_server

pytestmark = pytest.mark.slow
KEY = "test-key-1b7e"


@pytest.fixture
def server(trained_run: dict, tmp_path: Path) -> Iterator[Callable]:
    """start(*overrides, env=None) -> (process, url, port, log path): a server of this test; all killed afterwards."""
    started = []

    def start(*overrides: str, env: dict | None = None) -> tuple:
        log = tmp_path / f"serve{len(started)}.log"
        process, url = start_server([f"model_file={trained_run['model_file']}", "threads=1", *overrides], log,
                                    threads=1, env=env)
        started.append(process)
        return process, url, int(url.rsplit(":", 1)[1]), log
    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def connections(port: int) -> int:
    """Established TCP connections to 127.0.0.1:port (the server's side of them)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[3] == "01" and int(line.split()[1].rsplit(":", 1)[1], 16) == port)


def held_requests(pool: ThreadPoolExecutor, url: str, port: int, n: int, headers: dict | None = None) -> list:
    """n requests sent while the inference worker is stopped, once the server has accepted all of them."""
    futures = [pool.submit(call, f"{url}/translate", {"text": ["A dog runs."]}, 60, headers) for _ in range(n)]
    deadline = time.monotonic() + 30
    while connections(port) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the requests' bytes follow their connections
    return futures


def refused(url: str) -> bool:
    try:
        call(f"{url}/health", timeout=1)
    except (ConnectionError, urllib.error.URLError) as e:
        return not isinstance(getattr(e, "reason", None), TimeoutError)
    return False


def ended(pids: list[int]) -> bool:
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


def one_error_line(log: Path, *words: str) -> bool:
    text = log.read_text()
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    return "Traceback" not in text and len(errors) == 1 and all(w in errors[0] for w in words)


def test_a_killed_inference_worker_answers_held_requests_503_and_ends_the_service(server: Callable) -> None:
    process, url, port, log = server()
    kinds = service_processes(process.pid, port)
    worker, pids = kinds["inference worker"][0], [p for ps in kinds.values() for p in ps]
    os.kill(worker, signal.SIGSTOP)
    with ThreadPoolExecutor(4) as pool:
        futures = held_requests(pool, url, port, 4)
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        answers = [f.result() for f in futures]
        answered_s = time.monotonic() - killed
    assert all(status == 503 and "stopping" in answer["detail"] for status, answer in answers), answers
    assert answered_s < 5, answered_s
    assert process.wait(timeout=30) == 1
    assert one_error_line(log, "inference worker", str(worker), "SIGKILL"), log.read_text()[-2000:]
    assert ended(pids) and refused(url)


def test_a_killed_http_process_leaves_no_port_that_hangs(server: Callable) -> None:
    """After the kill, every /health probe is answered or refused within a second; never left hanging."""
    process, url, port, log = server()
    kinds = service_processes(process.pid, port)
    http, pids = kinds["HTTP"][0], [p for ps in kinds.values() for p in ps]
    os.kill(http, signal.SIGKILL)
    for _ in range(5):
        started = time.monotonic()
        try:
            status = call(f"{url}/health", timeout=1)[0]
        except (ConnectionError, urllib.error.URLError) as e:
            status = None
            assert not isinstance(getattr(e, "reason", None), TimeoutError), "a /health probe hung"
        assert time.monotonic() - started < 1 and status in (None, 503)
        time.sleep(0.2)
    assert process.wait(timeout=30) == 1
    assert one_error_line(log, "HTTP process", str(http), "SIGKILL"), log.read_text()[-2000:]
    assert ended(pids)


def test_the_api_key_and_a_sigterm_drain(server: Callable) -> None:
    """Keyed: /translate and /info 401 without the key (before the body is read), /health open. SIGTERM: the
    requests in flight finish, new connections are refused, every child ends first, exit status 0."""
    process, url, port, log = server("grace_period=60", env={"SEQ2SEQ_API_KEY": KEY})
    key = {"X-API-Key": KEY}
    assert call(f"{url}/health") == (200, "ok")
    for path, body in (("/translate", {"text": ["A dog runs."]}), ("/info", None)):
        for headers in (None, {"X-API-Key": "wrong"}):
            status, answer = call(f"{url}{path}", body, headers=headers)
            assert status == 401 and "X-API-Key" in answer["detail"], (path, status, answer)
    assert call(f"{url}/translate", b"{", headers={"Content-Length": "1000000000"})[0] == 401  # not waited for
    assert call(f"{url}/info", headers=key)[0] == 200
    assert call(f"{url}/translate", {"text": ["A dog runs."]}, headers=key)[0] == 200

    kinds = service_processes(process.pid, port)
    children = [p for kind, ps in kinds.items() if kind != "main" for p in ps]
    os.kill(kinds["inference worker"][0], signal.SIGSTOP)
    with ThreadPoolExecutor(3) as pool:
        futures = held_requests(pool, url, port, 3, key)
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not refused(url) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert refused(url), "new connections still accepted after SIGTERM"
        os.kill(kinds["inference worker"][0], signal.SIGCONT)
        answers = [f.result() for f in futures]
    assert [status for status, _ in answers] == [200] * 3, answers
    assert process.wait(timeout=60) == 0
    assert ended(children)
    text = log.read_text()
    assert "Traceback" not in text and "error:" not in text and KEY not in text, text[-2000:]


def test_a_worker_that_never_answers_gets_504_then_503_at_the_end_of_the_grace_period(server: Callable) -> None:
    """Bounded waits: a stopped worker's request gets 504 after `timeout`; one held at SIGTERM gets 503 when
    `grace_period` ends, and the service still exits 0."""
    process, url, port, log = server("timeout=3", "grace_period=2")
    worker = service_processes(process.pid, port)["inference worker"][0]
    os.kill(worker, signal.SIGSTOP)
    started = time.monotonic()
    status, answer = call(f"{url}/translate", {"text": ["A dog runs."]}, timeout=30)
    assert status == 504 and "timeout" in answer["detail"] and 3 <= time.monotonic() - started < 8
    with ThreadPoolExecutor(1) as pool:
        (future,) = held_requests(pool, url, port, 1)
        process.send_signal(signal.SIGTERM)
        status, answer = future.result()
    assert status == 503 and "stopped" in answer["detail"], answer
    os.kill(worker, signal.SIGCONT)  # a stopped process would take its SIGTERM only when killed, 5 s later
    assert process.wait(timeout=30) == 0 and "Traceback" not in log.read_text()
