"""The service's page (GET /) and what it asks of the JSON API (attention), down to a real headless Chromium
that types a sentence and reads the translation, n-best list and attention map off the page.

The browser is Debian's chromium and chromium-driver under Selenium (.ci/run installs them). Under CI=true a
missing browser fails the browser tests; elsewhere they are skipped, saying what to install.
"""
import os
import re
import runpy
import urllib.request
from collections.abc import Iterator
from fnmatch import fnmatch

import pytest
from pydantic import ValidationError
from setuptools.config.pyprojecttoml import read_configuration

from benchmarks.loadtest import call, running_server
from conftest import FIXTURES, ROOT
from seq2seq.inference import service
from seq2seq.inference.service import Limits, TranslateRequest, TranslationAPI
from seq2seq.inference.translator import Translator

MODEL = FIXTURES / "model_v2.pt"  # trained a little, attention "luong", beam 2: it loads in a second
KEY = "page-key-5c1d"
SENTENCE = "A man in an orange hat is looking at a dog."
PAGE = runpy.run_path(str(ROOT / "scripts" / "page_screenshot.py"))  # chromium, wait_for, translate_on_page


@pytest.fixture(scope="module")
def translator() -> Translator:
    return Translator.load(str(MODEL))


def expected_map(translator: Translator, line: str, prefix: str | None = None, **decoding) -> dict:
    return service.attention_answer(translator.using(**decoding).attention([line], [prefix])[0])


def same_map(answered: dict, expected: dict) -> bool:
    """The same pieces and weights within the answer's rounding (a batch may differ from one line in the last bits)."""
    return answered["src_pieces"] == expected["src_pieces"] and answered["tgt_pieces"] == expected["tgt_pieces"] \
        and flat(answered["weights"]) == pytest.approx(flat(expected["weights"]), abs=2e-4)


def flat(rows: list[list[float]]) -> list[float]:
    return [w for row in rows for w in row]


def test_every_data_file_of_the_package_is_package_data() -> None:
    """pip installs only the files pyproject's package-data names: the page would be missing from a wheel."""
    patterns = read_configuration(ROOT / "pyproject.toml")["tool"]["setuptools"]["package-data"]
    files = [p for p in (ROOT / "seq2seq").rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert any(p.name == "page.html" for p in files)
    for path in files:
        package, name = ".".join(path.parent.relative_to(ROOT).parts), path.name
        assert any(fnmatch(name, pattern) for pattern in patterns.get(package, [])), f"{path} is not package data"


def test_the_page_loads_nothing_from_elsewhere() -> None:
    """No CDN, font or script of another origin: the machines it runs on may have no internet."""
    html = service.PAGE.read_text(encoding="utf-8")
    assert not re.search(r"https?:|(src|href|url)\s*[=(]\s*[\"']?//", html)
    assert re.findall(r"(?:src|href)=\"([^\"]*)\"", html) == ["data:,"]  # the empty favicon, so none is asked for


def test_attention_is_answered_per_line_for_the_requests_that_ask(translator: Translator) -> None:
    """One batch, three requests: attention for each line of those that ask (a blank line: empty), the map of the
    very translation answered, in the request's beam; none for the request that does not ask."""
    api = TranslationAPI({}, max_batch_size=4)
    api.translator = translator
    requests = [TranslateRequest(text=[SENTENCE, ""], attention=True), TranslateRequest(text=["Two dogs play."]),
                TranslateRequest(text=["A boy sits.", SENTENCE], beam_size=1, n_best=1, attention=True)]
    first, second, third = api.predict(requests)
    assert first["translations"] == translator.translate([SENTENCE, ""])
    assert same_map(first["attention"][0], expected_map(translator, SENTENCE))
    assert first["attention"][1] == {"src_pieces": [], "tgt_pieces": [], "weights": []}
    assert "attention" not in second and second["translations"] == translator.translate(["Two dogs play."])
    assert all(same_map(answered, expected_map(translator, line, beam_size=1))
               for answered, line in zip(third["attention"], ("A boy sits.", SENTENCE), strict=True))
    for amap in (first["attention"][0], *third["attention"]):
        assert len(amap["weights"]) == len(amap["tgt_pieces"]) and amap["tgt_pieces"][-1] == "</s>"
        assert all(len(row) == len(amap["src_pieces"]) and abs(sum(row) - 1) < 1e-3 for row in amap["weights"])
    alignment = translator.attention([SENTENCE])[0]
    assert first["translations"][0] == alignment.translation  # the map belongs to the translation shown
    assert flat(first["attention"][0]["weights"]) == pytest.approx(flat(alignment.weights.tolist()), abs=1e-4)


def test_prefixes_alignments_and_attention_are_answered_per_line_in_one_batch(translator: Translator) -> None:
    """Three requests in one batch, two of them in one search: each line's prefix forces its translation (as the
    Translator forces it), its attention map is that of the forced translation, and its alignments are the
    Translator's records for every hypothesis answered (the n-best list's, or the translation's alone)."""
    api = TranslationAPI({}, max_batch_size=4)
    api.translator = translator
    sp = translator.tokenizer.tgt
    first_lines, first_prefixes = [SENTENCE, "", "Two dogs play."], ["Ein Mann", "Ein", None]
    requests = [TranslateRequest(text=first_lines, prefix=first_prefixes, attention=True, alignments=True),
                TranslateRequest(text=[SENTENCE], n_best=2, alignments=True),
                TranslateRequest(text=["A boy sits."], prefix=["Zwei"])]
    first, second, third = api.predict(requests)

    forced = translator.translate_n_best(first_lines, first_prefixes, alignments=True)
    assert first["translations"] == [hyps[0].text for hyps in forced] == translator.translate(first_lines, first_prefixes)
    assert first["translations"][0].startswith("Ein Mann") and first["translations"][1] == ""
    assert not translator.translate([SENTENCE])[0].startswith("Ein Mann")  # so the prefix did force something
    assert first["alignments"] == [[h.alignment.record() for h in hyps] for hyps in forced]
    assert first["alignments"][0][0]["tgt_pieces"][:2] == sp.encode("Ein Mann", out_type=str)
    assert all(same_map(answered, expected_map(translator, line, prefix)) for answered, line, prefix
               in zip(first["attention"][::2], first_lines[::2], first_prefixes[::2], strict=True))
    assert first["attention"][0]["tgt_pieces"][:-1] == first["alignments"][0][0]["tgt_pieces"]  # the forced one's map

    n_best = translator.using(n_best=2).translate_n_best([SENTENCE], alignments=True)[0]
    assert second["n_best"][0] == [{"text": h.text, "score": pytest.approx(h.score, abs=1e-4)} for h in n_best]
    assert second["alignments"] == [[h.alignment.record() for h in n_best]] and len(n_best) == 2
    assert "attention" not in second

    assert third == {"translations": translator.translate(["A boy sits."], ["Zwei"])}
    assert third["translations"][0].startswith("Zwei")


@pytest.mark.parametrize("field", ["attention", "alignments"])
def test_attention_or_alignments_of_a_model_without_attention_are_refused_by_name(monkeypatch, field: str) -> None:
    monkeypatch.setattr(TranslateRequest, "limits", Limits(attention=False))
    assert getattr(TranslateRequest(text=["A dog."]), field) is False
    with pytest.raises(ValidationError, match=rf"{field}[\s\S]*no attention \(model.attention: none\)[\s\S]*without {field}"):
        TranslateRequest(text=["A dog."], **{field: True})
    with pytest.raises(ValidationError, match=field):
        TranslateRequest(text=["A dog."], **{field: "yes"})


def test_a_sampling_servers_requests_are_refused_a_beam_or_n_best_above_one(monkeypatch) -> None:
    monkeypatch.setattr(TranslateRequest, "limits", Limits(default_beam_size=1, sampling="top_k"))
    assert TranslateRequest(text=["A dog."], beam_size=1, n_best=1, prefix=["Ein"]).n_best == 1
    for field in ("beam_size", "n_best"):
        with pytest.raises(ValidationError, match=rf"{field}\n.*this server samples \(sampling=top_k\).*{field} must be 1"):
            TranslateRequest(text=["A dog."], **{field: 3})


@pytest.fixture(scope="module")
def open_url(tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("page") / "serve.log"
    with running_server([f"model_file={MODEL}", "threads=1", "max_chars=200"], log, threads=1,
                        env={"SEQ2SEQ_API_KEY": ""}) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_url(tmp_path_factory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("page") / "serve.log"
    with running_server([f"model_file={MODEL}", "threads=1"], log, threads=1, env={"SEQ2SEQ_API_KEY": KEY}) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    try:
        page = PAGE["chromium"]()
    except FileNotFoundError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and no headless browser: {e}")
        pytest.skip(f"no headless browser here, so the page is not tested in one: {e}")
    yield page
    page.quit()


def text_of(page, css: str) -> list[str]:
    """textContent (exact, unlike .text, which trims and hides what is scrolled away) of each match."""
    return [e.get_attribute("textContent") for e in page.find_elements("css selector", css)]


@pytest.mark.slow
def test_get_root_is_the_page_with_or_without_a_key(keyed_url: str) -> None:
    """A browser opening the page cannot send the key: / is open, and the API behind it is not."""
    status, html = call(f"{keyed_url}/")
    assert status == 200 and html == service.PAGE.read_text(encoding="utf-8")
    with urllib.request.urlopen(f"{keyed_url}/", timeout=30) as response:
        policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy  # nothing from another origin
    assert call(f"{keyed_url}/info")[0] == 401
    status, answer = call(f"{keyed_url}/translate", {"text": ["A dog."], "attention": True}, headers={"X-API-Key": KEY})
    assert status == 200 and answer["attention"][0]["tgt_pieces"][-1] == "</s>"


@pytest.mark.slow
def test_a_typed_sentence_shows_its_translation_n_best_and_attention(browser, open_url: str,
                                                                     translator: Translator) -> None:
    browser.get(open_url)
    assert PAGE["wait_for"](browser, "ready", "error") == "ready"
    assert not browser.find_element("id", "key-form").is_displayed()  # no key asked by this service
    beam = translator.beam_size
    assert browser.find_element("id", "beam").get_attribute("value") == str(beam)  # /info's default, on the page
    assert PAGE["translate_on_page"](browser, SENTENCE) == "done", text_of(browser, "#status")

    expected = translator.using(n_best=beam).translate_n_best([SENTENCE])[0]
    assert text_of(browser, "#translation") == [expected[0].text]
    assert text_of(browser, "#n-best .text") == [h.text for h in expected]
    assert [float(s) for s in text_of(browser, "#n-best .score")] == pytest.approx([h.score for h in expected], abs=1e-3)
    amap = expected_map(translator, SENTENCE, n_best=beam)
    assert text_of(browser, "#attention th.src") == amap["src_pieces"]
    assert text_of(browser, "#attention th.tgt") == amap["tgt_pieces"]
    cells = [float(w) for w in browser.execute_script(
        "return [...document.querySelectorAll('#attention td[data-weight]')].map(c => c.dataset.weight)")]
    assert cells == pytest.approx(flat(amap["weights"]), abs=1e-6)


@pytest.mark.slow
def test_a_typed_prefix_starts_the_translation_and_its_attention_map(browser, open_url: str,
                                                                      translator: Translator) -> None:
    prefix = "Ein Mann"
    browser.get(open_url)
    assert PAGE["wait_for"](browser, "ready") == "ready"
    assert PAGE["translate_on_page"](browser, SENTENCE, prefix) == "done", text_of(browser, "#status")
    expected = translator.using(n_best=translator.beam_size).translate_n_best([SENTENCE], [prefix])[0]
    assert text_of(browser, "#translation") == [expected[0].text] and expected[0].text.startswith(prefix)
    assert not translator.translate([SENTENCE])[0].startswith(prefix)  # the prefix changed the translation
    assert text_of(browser, "#n-best .text") == [h.text for h in expected]
    amap = expected_map(translator, SENTENCE, prefix, n_best=translator.beam_size)
    assert text_of(browser, "#attention th.tgt") == amap["tgt_pieces"]
    assert amap["tgt_pieces"][:2] == translator.tokenizer.tgt.encode(prefix, out_type=str)
    assert PAGE["translate_on_page"](browser, SENTENCE) == "done"  # the box emptied: no prefix any more
    assert text_of(browser, "#translation") == translator.translate([SENTENCE])


@pytest.mark.slow
def test_bad_input_on_the_page_gets_the_services_reason(browser, open_url: str) -> None:
    browser.get(open_url)
    PAGE["wait_for"](browser, "ready")
    assert PAGE["translate_on_page"](browser, "   ") == "error"
    assert text_of(browser, "#status") == ["Type a sentence first."]
    n_best = browser.find_element("id", "n-best-size")
    n_best.clear()
    n_best.send_keys("3")  # above the model's beam, 2
    assert PAGE["translate_on_page"](browser, SENTENCE) == "error"
    assert text_of(browser, "#status") == ["n_best must be <= beam_size, got n_best=3 with beam_size=2"]


@pytest.mark.slow
def test_a_keyed_service_asks_for_the_key_and_refuses_a_wrong_one(browser, keyed_url: str,
                                                                   translator: Translator) -> None:
    browser.get(keyed_url)
    assert PAGE["wait_for"](browser, "key", "ready") == "key"
    assert "needs an API key" in text_of(browser, "#status")[0] and browser.find_element("id", "key").is_displayed()
    assert browser.find_element("id", "source").get_attribute("disabled") is not None
    for key, state, said in (("wrong", "key", "That key was refused"), (KEY, "ready", "")):
        browser.find_element("id", "key").send_keys(key, "\n")  # the page is "loading" until the service answers
        assert PAGE["wait_for"](browser, state) == state and said in text_of(browser, "#status")[0]
    assert not browser.find_element("id", "key-form").is_displayed()
    assert PAGE["translate_on_page"](browser, SENTENCE) == "done"
    assert text_of(browser, "#translation") == translator.translate([SENTENCE])
