"""The HTTP translation service on LitServe: POST /translate, GET /health, GET /info, and the page at GET /.

LitServe (Lightning's serving engine) provides the HTTP server (FastAPI + uvicorn), the inference
worker processes, dynamic batching (requests that arrive within ``batch_timeout`` of each other, up to
``max_batch_size``, reach ``predict`` together), the health check and the info endpoint; this module
adds the request schema, how a batch of requests becomes one ``Translator`` call, and ``page.html`` (a
person types a sentence, sees its translation, n-best list and attention map; it speaks only the JSON
API: /info, then /translate with ``attention``), served in place of LitServe's "litserve running".

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
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from seq2seq.config import DecodingConfig, ServeConfig, TranslatorConfig
from seq2seq.inference.guard import Guard, short_validation_error
from seq2seq.inference.supervisor import Service, die_with_parent
from seq2seq.inference.translator import Alignment, Translator

log = logging.getLogger(__name__)
PAGE = resources.files(__package__) / "page.html"
# The page runs only its own inline script and style and talks only to this service: nothing from another
# origin can load, and no other site can frame it (it may hold an API key the person typed).
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
               "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
WEIGHT_DECIMALS = 4  # attention weights in answers: enough to draw and compare a map, a third of the digits


@dataclass
class Limits:
    """What one request may ask for (ServeConfig's max_lines, max_chars, max_beam_size); default_beam_size
    is the model's (used when a request gives none, and to check its n_best); attention: whether the model
    has attention to return (not a plain ``attention: none`` model)."""
    max_lines: int = ServeConfig.max_lines
    max_chars: int = ServeConfig.max_chars
    max_beam_size: int = ServeConfig.max_beam_size
    default_beam_size: int = DecodingConfig.beam_size
    attention: bool = True


class TranslateRequest(BaseModel):
    """{"text": ["line", ...], "beam_size": 5, "n_best": 3, "attention": true}: all but text optional."""
    model_config = ConfigDict(extra="forbid")
    limits: ClassVar[Limits] = Limits()  # set by the server before it starts (its HTTP processes fork)

    text: list[StrictStr]
    beam_size: StrictInt | None = Field(default=None, ge=1)
    n_best: StrictInt | None = Field(default=None, ge=1)
    attention: StrictBool = False

    @field_validator("text")
    @classmethod
    def _within_limits(cls, text: list[str]) -> list[str]:
        if len(text) > cls.limits.max_lines:
            raise ValueError(f"at most {cls.limits.max_lines} lines per request (max_lines), got {len(text)}")
        for i, line in enumerate(text):
            if len(line) > cls.limits.max_chars:
                raise ValueError(f"line {i} has {len(line)} characters; at most {cls.limits.max_chars} (max_chars)")
        return text

    @field_validator("beam_size")
    @classmethod
    def _beam_within_limit(cls, beam_size: int | None) -> int | None:
        if beam_size is not None and beam_size > cls.limits.max_beam_size:
            raise ValueError(f"at most {cls.limits.max_beam_size} (max_beam_size), got {beam_size}")
        return beam_size

    @field_validator("attention")
    @classmethod
    def _model_has_attention(cls, attention: bool) -> bool:
        if attention and not cls.limits.attention:
            raise ValueError("this model has no attention (model.attention: none) to return; ask without attention")
        return attention

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
        """Every request's lines in one call per distinct (beam_size, n_best), and the lines of those that ask
        for attention in one more (the same search, its attention kept); answers in request order.
        (With max_batch_size 1 LitServe passes one request, not a list.)"""
        if isinstance(requests, TranslateRequest):
            return self.predict([requests])[0]
        answers: list[dict] = [{} for _ in requests]
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.beam_size or self.translator.beam_size, r.n_best), []).append(i)
        for (beam_size, n_best), members in groups.items():
            translator = self.translator.using(beam_size=beam_size, n_best=n_best or 1)
            lists = iter(translator.translate_n_best([line for i in members for line in requests[i].text]))
            wanted = [line for i in members if requests[i].attention for line in requests[i].text]
            maps = iter(translator.attention(wanted) if wanted else [])
            for i in members:
                mine = [next(lists) for _ in requests[i].text]
                answers[i]["translations"] = [hyps[0].text for hyps in mine]
                if n_best is not None:
                    answers[i]["n_best"] = [[asdict(h) for h in hyps] for hyps in mine]
                if requests[i].attention:
                    answers[i]["attention"] = [attention_answer(next(maps)) for _ in requests[i].text]
        return answers

    def unbatch(self, output: list[dict]) -> list[dict]:
        return output

    def encode_response(self, output: dict) -> dict:
        return output


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
    limits = Limits(cfg.max_lines, cfg.max_chars, cfg.max_beam_size, translator.beam_size, translator.has_attention)
    del translator  # not held while serving: the workers load their own, and the HTTP processes fork from this one
    api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    source = f"${cfg.api_key_env}" if cfg.api_key_env else "api_key_env"
    log.warning("API key: %s", f"required (X-API-Key, from {source})" if api_key else
                f"none ({source} is not set): anyone who reaches the port can translate")
    service = server(options, limits, max_batch_size=cfg.max_batch_size, batch_timeout=cfg.batch_timeout,
                     workers=cfg.workers, timeout=cfg.timeout, threads=cfg.threads, info=info,
                     max_body_bytes=cfg.body_bytes, grace_period=cfg.grace_period, api_key=api_key)
    service.run(host=cfg.host, port=cfg.port, generate_client_file=False, log_level="warning")
