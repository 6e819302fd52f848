"""scripts/serve.py as a user runs it: the real server on a free loopback port, spoken to over HTTP."""
import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks.loadtest import call, load, running_server
from conftest import MULTI30K
from seq2seq.data.sources import read_lines
from seq2seq.inference.translator import Translator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(trained_run: dict, tmp_path_factory) -> dict:
    """A running server (max_lines=8, max_chars=200 to test the limits); its URL and model file."""
    model, log = str(trained_run["model_file"]), tmp_path_factory.mktemp("serve") / "serve.log"
    overrides = [f"model_file={model}", "beam_size=3", "max_lines=8", "max_chars=200", "threads=1"]
    with running_server(overrides, log, threads=1) as url:
        yield {"url": url, "model": model}


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return read_lines(MULTI30K / "test_2016_flickr.en.gz")[:96]


def test_health_and_info(service: dict) -> None:
    assert call(f"{service['url']}/health") == (200, "ok")
    status, info = call(f"{service['url']}/info")
    assert status == 200 and info["model"]["model_file"] == service["model"]
    assert info["model"]["decoding"]["beam_size"] == 3 and info["model"]["limits"]["max_lines"] == 8


def test_translations_and_n_best_in_order(service: dict, lines: list[str]) -> None:
    batch = [lines[0], "", lines[1], lines[2]]
    translator = Translator.load(service["model"], beam_size=3)
    status, answer = call(f"{service['url']}/translate", {"text": batch})
    assert status == 200 and answer == {"translations": translator.translate(batch)}
    status, answer = call(f"{service['url']}/translate", {"text": batch, "beam_size": 4, "n_best": 2})
    expected = translator.using(beam_size=4, n_best=2).translate_n_best(batch)
    assert status == 200 and answer["translations"] == [hyps[0].text for hyps in expected]
    assert answer["n_best"] == [[{"text": h.text, "score": pytest.approx(h.score, abs=1e-4)} for h in hyps]
                                for hyps in expected]


@pytest.mark.parametrize("body, field", [
    (b'{"text": ["A dog', "body"),                                  # malformed JSON
    (b'["A dog."]', "body"),                                        # not an object
    ({"txt": ["A dog."]}, "text"),                                  # missing field (and an unknown one)
    ({"text": "A dog."}, "text"),                                   # wrong type
    ({"text": ["A dog.", 3]}, "text"),
    ({"text": ["A dog."], "beam_size": 0}, "beam_size"),
    ({"text": ["A dog."], "beam_size": "3"}, "beam_size"),
    ({"text": ["A dog."], "beam_size": 11}, "beam_size"),           # above max_beam_size
    ({"text": ["A dog."], "n_best": 4}, "n_best"),                  # above the default beam 3
    ({"text": ["A dog."] * 9}, "text"),                             # above max_lines
    ({"text": ["x" * 201]}, "text"),                                # above max_chars
])
def test_bad_requests_get_a_4xx_naming_the_field(service: dict, body, field: str) -> None:
    status, answer = call(f"{service['url']}/translate", body)
    assert 400 <= status < 500 and isinstance(answer, dict), (status, answer)
    assert any(field in map(str, d["loc"]) or field in d["msg"] for d in answer["detail"]), answer
    assert call(f"{service['url']}/translate", {"text": ["A dog runs."]})[0] == 200  # the worker is still there


def test_concurrent_requests_each_get_their_own_lines(service: dict, lines: list[str]) -> None:
    """24 clients at once, different lines, beam sizes and n_best: each answer is its own request's."""
    translator = Translator.load(service["model"])
    requests = [{"text": lines[4 * i : 4 * i + 4], "beam_size": 1 + i % 4} | ({"n_best": 1} if i % 3 == 0 else {})
                for i in range(24)]
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda body: call(f"{service['url']}/translate", body), requests))
    for body, (status, answer) in zip(requests, answers):
        assert status == 200, answer
        assert answer["translations"] == translator.using(beam_size=body["beam_size"]).translate(body["text"])
        assert ("n_best" in answer) == ("n_best" in body)


def test_the_load_test_runs_without_failures(service: dict) -> None:
    lines = read_lines(MULTI30K / "test_2016_flickr.en.gz")[:40]
    for clients in (1, 4):
        level = load(service["url"], lines, clients, requests=8, lines_per_request=4, max_seconds=60, body={})
        assert level["failed"] == 0 and level["requests"] == 8 and level["sentences"] == 32, level
        assert 0 < level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"]


def raw_answer(url: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """(status, body) of a request written byte for byte on a socket of its own (5 s at most)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(head.encode() + b"\r\n\r\n" + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_an_oversized_body_gets_413_unread_with_a_short_answer(service: dict) -> None:
    """A gigabyte announced, 100 bytes sent: the 413 comes at once, so the body was never waited for."""
    head = ("POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000000000\r\nConnection: close")
    status, body = raw_answer(service["url"], head, b'{"text": ["' + b"x" * 89)
    assert status == 413 and len(body) < 1024 and b"max_body_bytes" in body, body


def test_no_error_answer_echoes_the_input(service: dict) -> None:
    """pydantic's 422 would return the whole offending value (here 20,000 characters) as `input`."""
    for body in ({"text": "x" * 20_000}, {"text": ["x" * 20_000]}, {"x" * 20_000: 1, "text": ["A dog."]}):
        status, answer = call(f"{service['url']}/translate", body)
        assert status == 422 and len(json.dumps(answer)) < 1024, (status, str(answer)[:300])


def test_a_request_at_every_limit_is_accepted(service: dict) -> None:
    """max_lines lines of max_chars characters outside the BMP (12 bytes each in ASCII JSON), the largest beam
    and n_best: within the default max_body_bytes."""
    body = json.dumps({"text": ["\U0001F600" * 200] * 8, "beam_size": 10, "n_best": 10}).encode()
    assert len(body) > 8 * 200 * 12
    status, answer = call(f"{service['url']}/translate", body)
    assert status == 200 and len(answer["translations"]) == 8 and all(len(n) == 10 for n in answer["n_best"])
