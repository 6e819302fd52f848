"""The HTTP translation service on LitServe: POST /translate, GET /health, GET /info.

LitServe (Lightning's serving engine) provides the HTTP server (FastAPI + uvicorn), the inference
worker processes, dynamic batching (requests that arrive within ``batch_timeout`` of each other, up to
``max_batch_size``, reach ``predict`` together), the health check and the info endpoint; this module
adds only the request schema and how a batch of requests becomes one ``Translator`` call.

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
from typing import ClassVar

import litserve
import torch
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator

from seq2seq.config import DecodingConfig, ServeConfig, TranslatorConfig
from seq2seq.inference.guard import Guard, short_validation_error
from seq2seq.inference.supervisor import Service, die_with_parent
from seq2seq.inference.translator import Translator

log = logging.getLogger(__name__)


@dataclass
class Limits:
    """What one request may ask for (ServeConfig's max_lines, max_chars, max_beam_size); default_beam_size
    is the model's (used when a request gives none, and to check its n_best)."""
    max_lines: int = ServeConfig.max_lines
    max_chars: int = ServeConfig.max_chars
    max_beam_size: int = ServeConfig.max_beam_size
    default_beam_size: int = DecodingConfig.beam_size


class TranslateRequest(BaseModel):
    """{"text": ["line", ...], "beam_size": 5, "n_best": 3}: beam_size and n_best optional."""
    model_config = ConfigDict(extra="forbid")
    limits: ClassVar[Limits] = Limits()  # set by the server before it starts (its HTTP processes fork)

    text: list[StrictStr]
    beam_size: StrictInt | None = Field(default=None, ge=1)
    n_best: StrictInt | None = Field(default=None, ge=1)

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
        """Every request's lines in one call per distinct (beam_size, n_best); answers in request order.
        (With max_batch_size 1 LitServe passes one request, not a list.)"""
        if isinstance(requests, TranslateRequest):
            return self.predict([requests])[0]
        answers: list[dict] = [{} for _ in requests]
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.beam_size or self.translator.beam_size, r.n_best), []).append(i)
        for (beam_size, n_best), members in groups.items():
            translator = self.translator.using(beam_size=beam_size, n_best=n_best or 1)
            lists = translator.translate_n_best([line for i in members for line in requests[i].text])
            start = 0
            for i in members:
                mine, start = lists[start : start + len(requests[i].text)], start + len(requests[i].text)
                answers[i]["translations"] = [hyps[0].text for hyps in mine]
                if n_best is not None:
                    answers[i]["n_best"] = [[asdict(h) for h in hyps] for hyps in mine]
        return answers

    def unbatch(self, output: list[dict]) -> list[dict]:
        return output

    def encode_response(self, output: dict) -> dict:
        return output


def server(options: dict, limits: Limits, *, max_batch_size: int, batch_timeout: float, workers: int,
           timeout: float, threads: int | None, info: dict, max_body_bytes: int, grace_period: float,
           api_key: str | None) -> Service:
    """The server: POST /translate, GET /health (200 once the workers have loaded the model, until the
    service stops), GET /info; behind Guard, supervised by its main process."""
    TranslateRequest.limits = limits
    api = TranslationAPI(options, threads, max_batch_size=max_batch_size, batch_timeout=batch_timeout)
    guard = {"api_key": api_key, "max_body_bytes": max_body_bytes, "timeout": timeout}
    service = Service(api, accelerator="cpu", devices=1, workers_per_device=workers, timeout=timeout,
                      grace_period=grace_period, middlewares=[(Guard, guard)],
                      model_metadata={**info, "limits": {**asdict(limits), "max_body_bytes": max_body_bytes}})
    service.app.add_exception_handler(RequestValidationError, short_validation_error)
    return service


def serve(cfg: ServeConfig) -> None:
    """scripts/serve.py: check the model in this process (a bad one ends with one ``error:`` line here, not
    in a worker), then serve until a signal (exit 0) or a dead process (exit 1)."""
    options = TranslatorConfig.options(vars(cfg))
    info = {"model_file": cfg.model_file, **Translator.from_options(options).info()}
    limits = Limits(cfg.max_lines, cfg.max_chars, cfg.max_beam_size, info["decoding"]["beam_size"])
    api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
    source = f"${cfg.api_key_env}" if cfg.api_key_env else "api_key_env"
    log.warning("API key: %s", f"required (X-API-Key, from {source})" if api_key else
                f"none ({source} is not set): anyone who reaches the port can translate")
    service = server(options, limits, max_batch_size=cfg.max_batch_size, batch_timeout=cfg.batch_timeout,
                     workers=cfg.workers, timeout=cfg.timeout, threads=cfg.threads, info=info,
                     max_body_bytes=cfg.body_bytes, grace_period=cfg.grace_period, api_key=api_key)
    service.run(host=cfg.host, port=cfg.port, generate_client_file=False, log_level="warning")
