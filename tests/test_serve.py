"""scripts/serve.py as a user runs it: the real server on a free loopback port, spoken to over HTTP."""
import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks.loadtest import call, load, running_server
from conftest import MULTI30K, run_script
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


def test_a_prefix_forces_the_start_of_the_served_translation(service: dict, lines: list[str]) -> None:
    """Per line: its prefix (or none: null, "", or no prefix list) forces the served n-best list and attention map
    exactly as the Translator forces its own, and every forced hypothesis begins with the prefix."""
    batch, prefixes = [lines[0], lines[1], "", lines[2]], ["Zwei Frauen", None, "Ein", ""]
    translator = Translator.load(service["model"], beam_size=3)
    status, answer = call(f"{service['url']}/translate", {"text": batch, "prefix": prefixes, "n_best": 2, "attention": True})
    expected = translator.using(n_best=2).translate_n_best(batch, prefixes)
    assert status == 200, answer
    assert answer["translations"] == translator.translate(batch, prefixes) == [hyps[0].text for hyps in expected]
    assert answer["n_best"] == [[{"text": h.text, "score": pytest.approx(h.score, abs=1e-4)} for h in hyps]
                                for hyps in expected]
    assert all(h["text"].startswith("Zwei Frauen") for h in answer["n_best"][0])
    assert not translator.translate([lines[0]])[0].startswith("Zwei Frauen")  # the prefix is what made it so
    assert answer["translations"][1:] == translator.translate(batch[1:])  # no prefix: as before
    maps = translator.attention(batch, prefixes)
    assert [m["tgt_pieces"] for m in answer["attention"]] == [m.tgt_pieces for m in maps]
    pieces = translator.tokenizer.tgt.encode("Zwei Frauen", out_type=str)
    assert answer["attention"][0]["tgt_pieces"][: len(pieces)] == pieces


def test_served_alignments_are_translate_pys(service: dict, lines: list[str], tmp_path, monkeypatch) -> None:
    """alignments: true gives, per line and hypothesis, what translate.py alignments=true writes for that line and
    rank (with n_best: every hypothesis of the list; without: the translation's)."""
    batch = [lines[3], "", lines[4], lines[5]]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.en").write_text("".join(line + "\n" for line in batch), encoding="utf-8")
    for extra, n_best in (([], None), (["n_best=2"], 2)):
        assert run_script("translate", f"model_file={service['model']}", "input=in.en", "output=out.jsonl", "beam_size=3",
                          "alignments=true", *extra) == 0
        records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
        written = [[{k: v for k, v in r.items() if k not in ("line", "rank", "score", "text")} for r in records
                    if r["line"] == n] for n in range(1, len(batch) + 1)]
        status, answer = call(f"{service['url']}/translate", {"text": batch, "alignments": True}
                              | ({"n_best": n_best} if n_best else {}))
        assert status == 200 and answer["alignments"] == written, answer
        assert [len(a) for a in answer["alignments"]] == [n_best or 1, 1, n_best or 1, n_best or 1]
        assert all(a[0]["piece_alignment"] for a in answer["alignments"][::2])  # lines with pieces are aligned


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
    ({"text": ["A dog.", "A cat."], "prefix": ["Ein"]}, "prefix"),  # not one prefix per line
    ({"text": ["A dog."], "prefix": "Ein"}, "prefix"),
    ({"text": ["A dog."], "prefix": [3]}, "prefix"),
    ({"text": ["A dog."], "prefix": ["x" * 201]}, "prefix"),        # above max_chars
    ({"text": ["A dog."], "alignments": "yes"}, "alignments"),
])
def test_bad_requests_get_a_4xx_naming_the_field(service: dict, body, field: str) -> None:
    status, answer = call(f"{service['url']}/translate", body)
    assert 400 <= status < 500 and isinstance(answer, dict), (status, answer)
    assert any(field in map(str, d["loc"]) or field in d["msg"] for d in answer["detail"]), answer
    assert call(f"{service['url']}/translate", {"text": ["A dog runs."]})[0] == 200  # the worker is still there


def test_a_prefix_list_of_another_length_is_refused_saying_so(service: dict) -> None:
    status, answer = call(f"{service['url']}/translate", {"text": ["A dog.", "A cat.", ""], "prefix": ["Ein", None]})
    assert status == 422 and [d["loc"] for d in answer["detail"]] == [["body", "prefix"]], answer
    said = answer["detail"][0]["msg"]
    assert "one prefix per line of text" in said and "got 2 prefixes for 3 lines" in said, said


def test_a_sampling_server_samples_with_prefixes_and_refuses_beams(trained_run: dict, tmp_path, lines: list[str]) -> None:
    """sampling=top_k: each served line is the Translator's own sample for it and its prefix; a request asking for
    beam_size or n_best above 1 gets its 422 before it reaches the worker; /info says the server samples."""
    model = str(trained_run["model_file"])
    with running_server([f"model_file={model}", "sampling=top_k", "sampling_seed=3", "threads=1"], tmp_path / "serve.log",
                        threads=1) as url:
        assert call(f"{url}/info")[1]["model"]["limits"]["sampling"] == "top_k"
        for field in ("beam_size", "n_best"):
            status, answer = call(f"{url}/translate", {"text": ["A dog."], field: 2})
            assert status == 422 and answer["detail"][0]["loc"] == ["body", field], answer
            assert "this server samples (sampling=top_k)" in answer["detail"][0]["msg"], answer
        batch, prefixes = lines[:4], ["Ein Mann", None, "", "Zwei"]
        status, answer = call(f"{url}/translate", {"text": batch, "prefix": prefixes, "n_best": 1})
    sampler = Translator.load(model, sampling="top_k", sampling_seed=3)
    assert status == 200 and answer["translations"] == sampler.translate(batch, prefixes), answer
    assert answer["translations"][0].startswith("Ein Mann") and answer["translations"][3].startswith("Zwei")


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
    body = json.dumps({"text": ["\U0001F600" * 200] * 8, "prefix": ["\U0001F600" * 200] * 8, "beam_size": 10,
                       "alignments": True, "attention": True}).encode()  # and a prefix as long for each line
    assert len(body) > 2 * 8 * 200 * 12
    status, answer = call(f"{service['url']}/translate", body)
    assert status == 200 and len(answer["translations"]) == 8 and len(answer["alignments"]) == 8, str(answer)[:300]
