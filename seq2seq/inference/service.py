"""The HTTP translation service on LitServe: POST /translate, GET /health, GET /info, and the page at GET /.

LitServe (Lightning's serving engine) provides the HTTP server (FastAPI + uvicorn), the inference
worker processes, dynamic batching (requests that arrive within ``batch_timeout`` of each other, up to
``max_batch_size``, reach ``predict`` together), the health check and the info endpoint; this module
adds the request schema (lines, their forced target prefixes, search settings, attention maps and alignments),
how a batch of requests becomes one ``Translator`` call, and ``page.html`` (a person types a sentence and
optionally a prefix, sees its translation, n-best list and attention map; it speaks only the JSON API: /info,
then /translate with ``attention``), served in place of LitServe's "litserve running".

Requests are validated by FastAPI against ``TranslateRequest`` in the HTTP process, before they reach
a worker: a bad request gets a 422 JSON answer whose ``detail[].loc`` names the field, and can never
fail the batch it would have joined (LitServe fails a whole batch when one of its requests raises).
Before that, ``Guard`` (guard.py) checks the API key and the body's size; the main process supervises
the others (supervisor.py).
"""
import logging
import os
import signal
from dataclasses import asdict, dataclass
from importlib import resources
from typing import ClassVar

import litserve
import torch
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from seq2seq.config import DecodingConfig, ServeConfig, TranslatorConfig
from seq2seq.inference.guard import Guard, short_validation_error
from seq2seq.inference.supervisor import Service, die_with_parent
from seq2seq.inference.translator import Alignment, Hypothesis, Translator

log = logging.getLogger(__name__)
PAGE = resources.files(__package__) / "page.html"
# The page runs only its own inline script and style and talks only to this service: nothing from another
# origin can load, and no other site can frame it (it may hold an API key the person typed).
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
               "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
WEIGHT_DECIMALS = 4  # attention weights in answers: enough to draw and compare a map, a third of the digits


@dataclass
class Limits:
    """What one request may ask for (ServeConfig's max_lines, max_chars, max_beam_size; max_chars holds for each
    prefix too); default_beam_size is the model's (used when a request gives none, and to check its n_best);
    attention: whether the model has attention to return (not a plain ``attention: none`` model); sampling:
    the server's sampling method (top_k | top_p), which allows no beam_size or n_best above 1, or None."""
    max_lines: int = ServeConfig.max_lines
    max_chars: int = ServeConfig.max_chars
    max_beam_size: int = ServeConfig.max_beam_size
    default_beam_size: int = DecodingConfig.beam_size
    attention: bool = True
    sampling: str | None = TranslatorConfig.sampling


class TranslateRequest(BaseModel):
    """{"text": ["line", ...], "prefix": ["forced start", null, ...], "beam_size": 5, "n_best": 3, "attention": true,
    "alignments": true}: all but text optional; prefix, if given, has one entry per line (null or "": none)."""
    model_config = ConfigDict(extra="forbid")
    limits: ClassVar[Limits] = Limits()  # set by the server before it starts (its HTTP processes fork)

    text: list[StrictStr]
    prefix: list[StrictStr | None] | None = None
    beam_size: StrictInt | None = Field(default=None, ge=1)
    n_best: StrictInt | None = Field(default=None, ge=1)
    attention: StrictBool = False
    alignments: StrictBool = False

    @field_validator("text")
    @classmethod
    def _within_limits(cls, text: list[str]) -> list[str]:
        if len(text) > cls.limits.max_lines:
            raise ValueError(f"at most {cls.limits.max_lines} lines per request (max_lines), got {len(text)}")
        cls._check_chars("line", text)
        return text

    @field_validator("prefix")
    @classmethod
    def _one_prefix_per_line(cls, prefix: list[str | None] | None, info: ValidationInfo) -> list[str | None] | None:
        if prefix is None:
            return None
        if "text" in info.data and len(prefix) != len(info.data["text"]):  # text itself may have been refused
            raise ValueError(f"one prefix per line of text (null or \"\" for none): got {len(prefix)} prefixes for "
                             f"{len(info.data['text'])} lines")
        cls._check_chars("prefix", prefix)
        return prefix

    @classmethod
    def _check_chars(cls, what: str, strings: list[str | None]) -> None:
        for i, string in enumerate(strings):
            if string is not None and len(string) > cls.limits.max_chars:
                raise ValueError(f"{what} {i} has {len(string)} characters; at most {cls.limits.max_chars} (max_chars)")

    @field_validator("beam_size", "n_best")
    @classmethod
    def _one_if_sampling(cls, value: int | None, info: ValidationInfo) -> int | None:
        if cls.limits.sampling is not None and value is not None and value > 1:
            raise ValueError(f"this server samples (sampling={cls.limits.sampling}): one translation per line, so "
                             f"{info.field_name} must be 1 (or unset), got {value}")
        return value

    @field_validator("beam_size")
    @classmethod
    def _beam_within_limit(cls, beam_size: int | None) -> int | None:
        if beam_size is not None and beam_size > cls.limits.max_beam_size:
            raise ValueError(f"at most {cls.limits.max_beam_size} (max_beam_size), got {beam_size}")
        return beam_size

    @field_validator("attention", "alignments")
    @classmethod
    def _model_has_attention(cls, wanted: bool, info: ValidationInfo) -> bool:
        if wanted and not cls.limits.attention:
            raise ValueError(f"this model has no attention (model.attention: none) to return; ask without "
                             f"{info.field_name}")
        return wanted

    @model_validator(mode="after")
    def _n_best_within_beam(self) -> "TranslateRequest":
        beam = self.beam_size or self.limits.default_beam_size
        if self.n_best is not None and self.n_best > beam:
            raise ValueError(f"n_best must be <= beam_size, got n_best={self.n_best} with beam_size={beam}")
        return self


class TranslationAPI(litserve.LitAPI):
    """One Translator per worker; a batch of requests is decoded together, grouped by (beam_size, n_best)."""

    def __init__(self, options: dict, threads: int | None = None, **batching) -> None:
        super().__init__(api_path="/translate", **batching)
        self.options, self.threads, self.parent = options, threads, os.getpid()

    def setup(self, device: str) -> None:
        """In the worker process: dies with the main process, leaves Ctrl-C to it (which drains the service)."""
        die_with_parent(self.parent)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.threads:
            torch.set_num_threads(self.threads)
        self.translator = Translator.from_options(self.options)

    def decode_request(self, request: TranslateRequest) -> TranslateRequest:
        return request

    def batch(self, inputs: list[TranslateRequest]) -> list[TranslateRequest]:
        return inputs

    def predict(self, requests: list[TranslateRequest] | TranslateRequest) -> list[dict] | dict:
        """Every request's lines (with their prefixes) in one call per distinct (beam_size, n_best), the search's
        attention kept when one of them asks for attention or alignments, so that each map and alignment is
        that of the very translation answered; answers in request order.
        (With max_batch_size 1 LitServe passes one request, not a list.)"""
        if isinstance(requests, TranslateRequest):
            return self.predict([requests])[0]
        answers: list[dict] = [{} for _ in requests]
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.beam_size or self.translator.beam_size, r.n_best), []).append(i)
        for (beam_size, n_best), members in groups.items():
            translator = self.translator.using(beam_size=beam_size, n_best=n_best or 1)
            found = iter(translator.translate_n_best(
                [line for i in members for line in requests[i].text],
                [p for i in members for p in requests[i].prefix or [None] * len(requests[i].text)],
                alignments=any(requests[i].attention or requests[i].alignments for i in members)))
            for i in members:
                answers[i] = answer(requests[i], [next(found) for _ in requests[i].text])
        return answers

    def unbatch(self, output: list[dict]) -> list[dict]:
        return output

    def encode_response(self, output: dict) -> dict:
        return output


def answer(request: TranslateRequest, lists: list[list[Hypothesis]]) -> dict:
    """A request's answer from its lines' n-best lists: translations; n_best ({"text", "score"} per hypothesis)
    when asked; attention (the best translation's map) per line; alignments per line and hypothesis (the
    n-best list's, or without n_best the translation's alone), as translate.py's alignments=true records give them."""
    out: dict = {"translations": [hyps[0].text for hyps in lists]}
    if request.n_best is not None:
        out["n_best"] = [[{"text": h.text, "score": h.score} for h in hyps] for hyps in lists]
    if request.attention:
        out["attention"] = [attention_answer(hyps[0].alignment) for hyps in lists]
    if request.alignments:
        out["alignments"] = [[h.alignment.record() for h in hyps] for hyps in lists]
    return out


def attention_answer(alignment: Alignment) -> dict:
    """{"src_pieces": [...], "tgt_pieces": [...], "weights": [[...], ...]}: row t, target piece t's attention
    over the source pieces; both piece lists end with "</s>" (a blank line: all three empty)."""
    weights = [[round(w, WEIGHT_DECIMALS) for w in row] for row in alignment.weights.tolist()]
    return {"src_pieces": alignment.src_pieces, "tgt_pieces": alignment.tgt_pieces, "weights": weights}


def add_page(service: litserve.LitServer) -> None:
    """GET / answers page.html instead of LitServe's "litserve running" (routes match in order, so LitServe's
    own route is removed, not shadowed)."""
    html = PAGE.read_text(encoding="utf-8")
    service.app.router.routes[:] = [r for r in service.app.router.routes if getattr(r, "path", None) != "/"]

    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Content-Security-Policy": PAGE_POLICY, "Cache-Control": "no-cache"})
    service.app.add_api_route("/", page, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)


def server(options: dict, limits: Limits, *, max_batch_size: int, batch_timeout: float, workers: int,
           timeout: float, threads: int | None, info: dict, max_body_bytes: int, grace_period: float,
           api_key: str | None) -> Service:
    """The server: POST /translate, GET /health (200 once the workers have loaded the model, until the
    service stops), GET /info, GET / (the page); behind Guard, supervised by its main process."""
    TranslateRequest.limits = limits
    api = TranslationAPI(options, threads, max_batch_size=max_batch_size, batch_timeout=batch_timeout)
    guard = {"api_key": api_key, "max_body_bytes": max_body_bytes, "timeout": timeout}
    service = Service(api, accelerator="cpu", devices=1, workers_per_device=workers, timeout=timeout,
                      grace_period=grace_period, middlewares=[(Guard, guard)],
                      model_metadata={**info, "limits": {**asdict(limits), "max_body_bytes": max_body_bytes}})
    service.app.add_exception_handler(RequestValidationError, short_validation_error)
    add_page(service)
    return service


def serve(cfg: ServeConfig) -> None:
    """scripts/serve.py: check the model in this process (a bad one ends with one ``error:`` line here, not
    in a worker), then serve until a signal (exit 0) or a dead process (exit 1)."""
    options = TranslatorConfig.options(vars(cfg))
    translator = Translator.from_options(options)
    info = {"model_file": cfg.model_file, **translator.info()}
    limits = Limits(cfg.max_lines, cfg.max_chars, cfg.max_beam_size, translator.beam_size, translator.has_attention,
                    cfg.sampling)
    del translator  # not held while serving: the workers load their own, and the HTTP processes fork from this one
    api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    source = f"${cfg.api_key_env}" if cfg.api_key_env else "api_key_env"
    log.warning("API key: %s", f"required (X-API-Key, from {source})" if api_key else
                f"none ({source} is not set): anyone who reaches the port can translate")
    service = server(options, limits, max_batch_size=cfg.max_batch_size, batch_timeout=cfg.batch_timeout,
                     workers=cfg.workers, timeout=cfg.timeout, threads=cfg.threads, info=info,
                     max_body_bytes=cfg.body_bytes, grace_period=cfg.grace_period, api_key=api_key)
    service.run(host=cfg.host, port=cfg.port, generate_client_file=False, log_level="warning")
