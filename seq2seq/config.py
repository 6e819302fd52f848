"""Typed settings: each default and each check lives here, once.

The dataclasses are registered with Hydra's ConfigStore (``register()``), so that ``conf/`` YAML files
carry only what differs from these defaults and Hydra rejects a wrong type or an unknown key. Range
and choice checks run in ``__post_init__``: building the object (``OmegaConf.to_object`` of a composed
node, or a plain call from Python) is the check, and a bad value raises ``ConfigError`` naming the key.
"""
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


class ConfigError(ValueError):
    """A setting with a bad value, reported as ``<group>.<key> must ..., got ...``."""


def check_int(key: str, value: object, low: int = 1, none_ok: bool = False) -> None:
    if none_ok and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{key} must be an integer >= {low}{' or null' if none_ok else ''}, got {value!r}")


def check_number(key: str, value: object, ok: Callable[[float], bool], wanted: str, none_ok: bool = False) -> None:
    if none_ok and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ConfigError(f"{key} must be a number {wanted}{' or null' if none_ok else ''}, got {value!r}")


def check_flag(key: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")


def check_choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}")


ATTENTION_CHOICES = ("luong", "bahdanau", "none")
DECODER_CHOICES = ("gru", "cgru")


@dataclass
class ModelConfig:
    """The encoder's ``nn.GRU`` knobs, and the decoder's where they differ.

    input_size is the embedding size (the GRU's input_size); dropout acts on embeddings, between
    stacked GRU layers and on the readout's input, and on the source context (the encoder's outputs)
    and before the output projection unless context_dropout / output_dropout set those apart (LIUM's
    placement: 0.3 / 0.5 / 0.5); word_dropout zeroes whole source embeddings. decoder_hidden_size
    None = D * hidden_size (D = 2 when bidirectional), decoder_num_layers None = num_layers. decoder
    picks the decoder's wiring (gru: one GRU, attention after it for luong, before it for bahdanau;
    cgru: the conditional GRU, model/decoder.py), attention the score (cgru uses it between its GRUs,
    so it needs one).
    """
    input_size: int = 256                     # embedding size: the encoder GRU's input_size (and the decoder's)
    hidden_size: int = 256                    # encoder GRU units per direction (H)
    num_layers: int = 1                       # stacked encoder GRU layers
    dropout: float = 0.3                      # on embeddings, between GRU layers, the readout's input (and as below)
    context_dropout: float | None = None      # on the encoder's outputs, the attention memory (LIUM: 0.5); null: model.dropout
    output_dropout: float | None = None       # on the readout, before the output projection (LIUM: 0.5); null: model.dropout
    word_dropout: float = 0.0                 # source word dropout: a source piece's whole embedding zeroed in training
    bias: bool = True                         # the GRUs' b_ih and b_hh
    bidirectional: bool = True                # D = 2: h_n is (2 * num_layers, B, H)
    decoder_hidden_size: int | None = None    # null: D * hidden_size
    decoder_num_layers: int | None = None     # null: num_layers
    attention: str = "luong"                  # luong | bahdanau | none (only the bridged h_n carries the source)
    decoder: str = "gru"                      # gru (one GRU, wired by model.attention) | cgru (conditional GRU; needs attention)
    tie_embeddings: bool = True               # source and target share one embedding (needs a joint vocabulary)
    tie_output: bool = True                   # the output projection shares the target embedding
    layer_norm: bool = False                  # layer-normalised GRU gates, encoder and decoder (model/gru.py)

    def __post_init__(self) -> None:
        for key in ("input_size", "hidden_size", "num_layers", "decoder_hidden_size", "decoder_num_layers"):
            value = getattr(self, key)
            if not (key.startswith("decoder_") and value is None):
                check_int(f"model.{key}", value)
        for key in ("dropout", "context_dropout", "output_dropout", "word_dropout"):
            if getattr(self, key) is not None or key in ("dropout", "word_dropout"):
                check_number(f"model.{key}", getattr(self, key), lambda x: 0 <= x < 1, "in [0, 1)")
        for key in ("bias", "bidirectional", "tie_embeddings", "tie_output", "layer_norm"):
            check_flag(f"model.{key}", getattr(self, key))
        check_choice("model.attention", self.attention, ATTENTION_CHOICES)
        check_choice("model.decoder", self.decoder, DECODER_CHOICES)
        if self.decoder == "cgru" and self.attention == "none":
            raise ConfigError("model.decoder=cgru queries attention between its two GRUs: set model.attention "
                              "to luong or bahdanau (the score it uses), got none")

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def context_p(self) -> float:
        return self.dropout if self.context_dropout is None else self.context_dropout

    @property
    def output_p(self) -> float:
        return self.dropout if self.output_dropout is None else self.output_dropout

    @property
    def decoder_hidden(self) -> int:
        return self.decoder_hidden_size or self.directions * self.hidden_size

    @property
    def decoder_layers(self) -> int:
        return self.decoder_num_layers or self.num_layers


@dataclass
class DecodingConfig:
    """Test-time search: beam_size 1 is greedy; alpha is the GNMT length penalty ((5 + len) / 6) ** alpha;
    max_len caps output pieces (also capped at 1.5 x source + 10); n_best: hypotheses kept per sentence."""
    beam_size: int = 5                        # 1: greedy
    alpha: float = 1.0                        # length penalty ((5 + len) / 6) ** alpha
    max_len: int = 200                        # most output pieces (also capped at 1.5 x source + 10)
    n_best: int = 1                           # hypotheses kept per sentence (<= beam_size)

    def __post_init__(self) -> None:
        check_int("decoding.beam_size", self.beam_size)
        check_number("decoding.alpha", self.alpha, lambda x: x >= 0, ">= 0 (length penalty)")
        check_int("decoding.max_len", self.max_len)
        check_int("decoding.n_best", self.n_best)
        if self.n_best > self.beam_size:
            raise ConfigError(f"n_best must be <= beam_size (a beam keeps beam_size hypotheses), "
                              f"got n_best={self.n_best} with beam_size={self.beam_size}")


@dataclass
class SubwordSamplingConfig:
    """``data.subword_sampling``: SentencePiece's subword regularization of the training pairs, a new seeded
    segmentation of every pair each epoch (validation and test are always segmented deterministically).

    smoothing is SentencePiece's ``alpha``: the inverse temperature of the unigram model's segmentation
    probabilities (small: nearer uniform), or BPE-dropout's probability; nbest_size -1 samples from every
    segmentation in the lattice, N >= 2 from the N best (unigram only).
    """
    enabled: bool = False                     # sample each training pair's segmentation anew every epoch
    smoothing: float = 0.1                    # SentencePiece's alpha: unigram inverse temperature (BPE: dropout)
    nbest_size: int = -1                      # -1: sample from the whole lattice; N >= 2: from the N best (unigram)

    def __post_init__(self) -> None:
        check_flag("data.subword_sampling.enabled", self.enabled)
        check_number("data.subword_sampling.smoothing", self.smoothing, lambda x: 0 < x <= 1, "in (0, 1]")
        if isinstance(self.nbest_size, bool) or not isinstance(self.nbest_size, int) or \
                not (self.nbest_size == -1 or self.nbest_size >= 2):
            raise ConfigError(f"data.subword_sampling.nbest_size must be -1 (the whole lattice) or an integer >= 2, "
                              f"got {self.nbest_size!r}")


SCHEDULES = ("plateau", "inverse_sqrt", "cosine", "constant")


@dataclass
class OptimConfig:
    """Adam and its learning-rate schedule (see seq2seq/training/schedules.py).

    plateau multiplies the rate by `factor` after `patience` validations without a better val BLEU;
    inverse_sqrt and cosine warm up over `warmup_steps`; cosine ends at `min_lr`.
    """
    lr: float = 1.0e-3                        # Adam's (peak) learning rate
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam's beta1, beta2
    weight_decay: float = 0.0                 # L2 penalty (Adam's weight_decay)
    fused: bool = False                       # Adam's fused kernel; off: with it a resumed CPU run drifted (CHANGELOG)
    schedule: str = "plateau"                 # plateau | inverse_sqrt | cosine | constant
    factor: float = 0.5                       # plateau: the rate is multiplied by this ...
    patience: int = 1                         # ... after this many validations without a better val BLEU
    min_lr: float = 1.0e-5                    # cosine: the rate at the end of the budget
    warmup_steps: int = 1000                  # inverse_sqrt, cosine: linear warm-up steps

    def __post_init__(self) -> None:
        check_number("optim.lr", self.lr, lambda x: x > 0, "> 0")
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)!r}")
        for beta in self.betas:
            check_number("optim.betas", beta, lambda x: 0 <= x < 1, "in [0, 1)")
        check_number("optim.weight_decay", self.weight_decay, lambda x: x >= 0, ">= 0")
        check_flag("optim.fused", self.fused)
        check_choice("optim.schedule", self.schedule, SCHEDULES)
        check_number("optim.factor", self.factor, lambda x: 0 < x < 1, "in (0, 1)")
        check_int("optim.patience", self.patience, low=0)
        check_number("optim.min_lr", self.min_lr, lambda x: x >= 0, ">= 0")
        check_int("optim.warmup_steps", self.warmup_steps)


@dataclass
class TrainConfig:
    """conf/train.yaml's own keys. Its groups are typed by the dataclasses above (model, optim, decoding)
    or checked as their ``_target_`` objects are built (data, trainer, callbacks, logger)."""
    seed: int = 1234                          # weights, batches, dropout and the tokenizer's sample
    resume: bool = False                      # continue from checkpoints/last.ckpt in hydra.run.dir
    init_from: str | None = None              # fine-tune: start from this model file's (or checkpoint's) weights,
                                              # tokenizer and model settings, with a fresh optimizer and schedule
    label_smoothing: float = 0.1              # epsilon of the label-smoothed cross-entropy
    average_checkpoints: int = 3              # the model file averages the top-k checkpoints by val BLEU (0: last weights)
    tune_alpha: list[float] | None = None     # e.g. [0.6,0.8,1.0]: the model file's alpha becomes the best on val
    data: Any = None
    model: Any = None
    optim: Any = None
    decoding: Any = None
    trainer: Any = None
    callbacks: Any = None
    logger: Any = None
    paths: Any = None

    def __post_init__(self) -> None:
        check_int("seed", self.seed, low=0)
        check_flag("resume", self.resume)
        if self.init_from is not None:
            if not (isinstance(self.init_from, str) and self.init_from):
                raise ConfigError(f"init_from must be a model file (or checkpoint) or null, got {self.init_from!r}")
            if self.resume:
                raise ConfigError(f"init_from={self.init_from} starts a new run from a model file's weights; "
                                  f"resume=true continues this run folder's checkpoint: give one of them")
        check_label_smoothing(self.label_smoothing)
        check_int("average_checkpoints", self.average_checkpoints, low=0)
        if self.tune_alpha is not None:
            if not self.tune_alpha:
                raise ConfigError("tune_alpha must be null or a non-empty list of length penalties, got []")
            for alpha in self.tune_alpha:
                check_number("tune_alpha", alpha, lambda x: x >= 0, ">= 0 (length penalties)")

    @classmethod
    def check(cls, cfg: Any) -> "TrainConfig":
        """The top-level keys of a composed config, checked (the groups are left to their own checks)."""
        return cls(**{f.name: cfg[f.name] for f in fields(cls) if f.type is not Any})


def check_label_smoothing(value: object) -> None:
    check_number("label_smoothing", value, lambda x: 0 <= x < 1, "in [0, 1)")


@dataclass
class ValidateConfig:
    """conf/validate.yaml: scripts/validate.py scores a model file on the validation split with a Trainer."""
    model_file: str = MISSING                 # model file (model.pt) or checkpoint (*.ckpt)
    seed: int = 1234                          # Lightning's seed_everything (validation decodes greedily: no effect)
    data: Any = None
    trainer: Any = None
    paths: Any = None


PRECISIONS = ("fp32", "bf16")
BACKENDS = ("torch", "onnx")
QUANTIZE = ("none", "int8")
SAMPLING = ("top_k", "top_p")


def check_sampling_search(sampling: str | None, beam_size: int | None, n_best: int | None) -> None:
    """Sampling draws one translation per line, piece by piece, in place of greedy search: no beam."""
    if sampling is not None and ((beam_size or 1) > 1 or (n_best or 1) > 1):
        raise ConfigError(f"sampling={sampling} draws one translation per line in place of greedy search: it needs "
                          f"beam_size=1 and n_best=1 (or unset), got beam_size={beam_size}, n_best={n_best}")


@dataclass
class TranslatorConfig:
    """The options of every command that translates (translate.py, evaluate.py model_file=..., serve.py) and
    of ``Translator.load``; null = the (first) model file's setting."""
    model_file: Any = MISSING                 # model file or checkpoint; a list [a.pt,b.pt] decodes with their ensemble
    beam_size: int | None = None              # 1: greedy
    alpha: float | None = None                # length penalty ((5 + len) / 6) ** alpha
    max_len: int | None = None                # most output pieces per sentence (also capped at 1.5 x source + 10)
    n_best: int | None = None                 # hypotheses per line (translate.py: K writes JSON lines)
    quantize: str = "none"                    # none | int8 (dynamic int8 GRU and Linear weights, CPU)
    precision: str = "fp32"                   # fp32 | bf16 (autocast)
    max_source_len: int = 400                 # longer inputs are cut there, with a warning
    max_tokens: int = 6000                    # source pieces x beam per batch
    device: str = "cpu"                       # cpu | cuda | cuda:N
    sampling: str | None = None               # null (search) | top_k | top_p: draw each piece from the model (beam_size 1)
    top_k: int = 10                           # sampling=top_k: draw among the k most probable pieces
    top_p: float = 0.9                        # sampling=top_p: among the fewest most probable pieces whose probability reaches p
    temperature: float = 1.0                  # sampling: divides the log-probabilities (< 1 sharper, > 1 flatter)
    sampling_seed: int = 0                    # sampling: with the line's text, seeds its draws (the same line, the same sample)
    backend: str = "torch"                    # torch | onnx: model_file is the folder scripts/export.py wrote (no torch)

    def __post_init__(self) -> None:
        paths = list(self.model_file) if isinstance(self.model_file, (list, tuple)) else [self.model_file]
        if self.model_file is not None and not (paths and all(isinstance(p, str) and p for p in paths)):
            raise ConfigError(f"model_file must be a model file or a list of them (an ensemble), got {self.model_file!r}")
        for key in ("beam_size", "max_len", "n_best"):
            check_int(key, getattr(self, key), none_ok=True)
        check_number("alpha", self.alpha, lambda x: x >= 0, ">= 0 (length penalty)", none_ok=True)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("quantize", self.quantize, QUANTIZE)
        if self.quantize != "none" and self.precision != "fp32":
            raise ConfigError(f"quantize={self.quantize} computes in int8/fp32: it cannot be combined with "
                              f"precision={self.precision}")
        check_int("max_source_len", self.max_source_len)
        check_int("max_tokens", self.max_tokens)
        check_choice("backend", self.backend, BACKENDS)
        if self.backend == "onnx":
            self._check_onnx(paths)
        if self.sampling is not None:
            check_choice("sampling", self.sampling, SAMPLING)
        check_int("top_k", self.top_k)
        check_number("top_p", self.top_p, lambda x: 0 < x <= 1, "in (0, 1]")
        check_number("temperature", self.temperature, lambda x: x > 0, "> 0")
        check_int("sampling_seed", self.sampling_seed, low=0)
        check_sampling_search(self.sampling, self.beam_size, self.n_best)

    def _check_onnx(self, paths: list) -> None:
        """What the ONNX runtime (seq2seq/inference/onnx_runtime.py) does not do: one error naming the setting."""
        unsupported = [(len(paths) > 1, "model_file: an ensemble (a list of model files)"),
                       (self.quantize != "none", f"quantize={self.quantize}"),
                       (self.precision != "fp32", f"precision={self.precision}"),
                       (self.sampling is not None, f"sampling={self.sampling}"),
                       (self.device != "cpu", f"device={self.device}")]
        for bad, what in unsupported:
            if bad:
                raise ConfigError(f"backend=onnx translates one exported model in fp32 on the CPU, without sampling: "
                                  f"{what} needs backend=torch")

    @classmethod
    def options(cls, cfg: Any) -> dict:
        """The translator options among a config's keys (a script's whole config), as a plain dict."""
        return {f.name: cfg[f.name] for f in fields(TranslatorConfig) if f.name in cfg}


INPUT_FORMATS = ("text", "jsonl")


@dataclass
class TranslateConfig(TranslatorConfig):
    """conf/translate.yaml: scripts/translate.py."""
    input: str | None = None                  # text file (or JSON lines); null or "-": stdin
    input_format: str = "text"                # text | jsonl: one {"text": ..., "prefix": ...} a line, prefix optional
    alignments: bool = False                  # write JSON lines with each hypothesis's piece and word alignments
    output: str | None = None                 # written only when complete; null or "-": stdout
    interactive: bool = False                 # translate each line as soon as it arrives (also when stdin is a terminal)
    attention_lines: Any = field(default_factory=list)  # input line numbers (1-based) whose attention maps to save, e.g. [1,3]
    attention_dir: str = "attention"          # folder for those maps: line<N>.png (source pieces x target pieces)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("input_format", self.input_format, INPUT_FORMATS)
        check_flag("alignments", self.alignments)
        lines = self.attention_lines
        numbers = [lines] if isinstance(lines, int) else list(lines or [])
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in numbers):
            raise ConfigError(f"attention_lines must be input line numbers >= 1, e.g. [1,3]; got {lines}")
        self.attention_lines = numbers


EXPORT_FORMATS = ("onnx",)


@dataclass
class ExportConfig:
    """conf/export.yaml: scripts/export.py writes a model file as a folder that runs without torch."""
    model_file: str = MISSING                 # model file (model.pt) or checkpoint (*.ckpt) to export
    format: str = "onnx"                      # onnx: encoder and one-step decoder graphs (seq2seq/inference/onnx_export.py)
    out: str = MISSING                        # the folder to write (replaced only when the new one has passed its check)
    check_input: str | None = None            # source lines the check translates; null: a built-in set of English captions
    check_lines: int = 64                     # how many of them
    tolerance: float = 1.0e-4                 # largest |ONNX - PyTorch| allowed in states, attention and log-probabilities
    opset: int = 17                           # ONNX opset of the graphs

    def __post_init__(self) -> None:
        check_choice("format", self.format, EXPORT_FORMATS)
        check_int("check_lines", self.check_lines)
        check_number("tolerance", self.tolerance, lambda x: x > 0, "> 0")
        check_int("opset", self.opset, low=14)


METRICS = ("bleu", "bleu_lit", "chrf", "ter")


@dataclass
class EvaluateConfig(TranslatorConfig):
    """conf/evaluate.yaml: scripts/evaluate.py, in hypothesis mode (hyp, ref) or model mode (model_file)."""
    model_file: Any = None                    # model mode: translate `split` with this model (or ensemble)
    hyp: str | None = None                    # hypothesis file, one line per reference line
    ref: str | None = None                    # reference file
    src: str | None = None                    # source file (optional): source column and length buckets of the report
    split: str = "test"                       # model mode: train | val | test (names as in the data config)
    output: str | None = None                 # model mode: also write the hypotheses here
    metrics: list[str] = field(default_factory=lambda: list(METRICS))  # bleu_lit: lowercased, Moses-tokenized BLEU
    lang: str = "de"                          # the hypotheses' language (Moses rules of bleu_lit)
    json: bool = False                        # print one JSON object instead of lines
    report: str | None = None                 # also write report.md (+ report.buckets.png) or report.html
    seed: int = 0                             # the data config reads it (no effect on scores)
    data: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for metric in self.metrics:
            check_choice("metrics", metric, METRICS)


@dataclass
class ServeConfig(TranslatorConfig):
    """conf/serve.yaml: scripts/serve.py, the HTTP service (seq2seq/inference/service.py)."""
    host: str = "127.0.0.1"                   # loopback only; 0.0.0.0 to listen on every interface
    port: int = 8080                          # TCP port (0: any free one)
    max_lines: int = 64                       # lines per request
    max_chars: int = 1000                     # characters per line
    max_beam_size: int = 10                   # largest beam_size a request may ask for
    max_batch_size: int = 32                  # requests decoded together (dynamic batching)
    batch_timeout: float = 0.05               # seconds a worker waits for more requests to join a batch
    workers: int = 1                          # inference worker processes, each with its own copy of the model
    threads: int | None = None                # torch threads per worker; null: torch's default
    timeout: float = 120                      # seconds a request may wait and run before it gets a 504
    max_body_bytes: int | None = None         # larger bodies get 413 unread; null: the largest a request within the limits can be
    grace_period: float = 30                  # seconds SIGTERM/SIGINT leaves requests in flight to finish before their 503
    api_key_env: str | None = "SEQ2SEQ_API_KEY"  # environment variable holding the API key (X-API-Key); unset: no key

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("port", self.port, low=0)
        for key in ("max_lines", "max_chars", "max_beam_size", "max_batch_size", "workers"):
            check_int(key, getattr(self, key))
        check_int("threads", self.threads, none_ok=True)
        check_number("batch_timeout", self.batch_timeout, lambda x: x >= 0, ">= 0")
        check_number("timeout", self.timeout, lambda x: x > 0, "> 0")
        check_number("grace_period", self.grace_period, lambda x: x > 0, "> 0 (seconds)")
        check_int("max_body_bytes", self.max_body_bytes, low=self.least_body_bytes, none_ok=True)
        if self.api_key_env is not None and not (isinstance(self.api_key_env, str) and self.api_key_env):
            raise ConfigError(f"api_key_env must name an environment variable, or be null, got {self.api_key_env!r}")

    @property
    def least_body_bytes(self) -> int:
        """The largest body a request within max_lines and max_chars can have: a line and its prefix each,
        every character escaped as a surrogate pair (\\uXXXX\\uXXXX, 12 bytes), 16 bytes of JSON per string
        (quotes, comma, spacing) and 4 KiB for the rest (braces, keys, beam_size, n_best, flags)."""
        return self.max_lines * 2 * (self.max_chars * 12 + 16) + 4096

    @property
    def body_bytes(self) -> int:
        """max_body_bytes, or the least that refuses no request within the limits."""
        return self.least_body_bytes if self.max_body_bytes is None else self.max_body_bytes


def from_dict(cls: type, values: dict, group: str):
    """A config object from a plain dict (a model file's, a checkpoint's), unknown keys named."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{group}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


def cpu_precision(avx512_bf16: bool | None = None, amx: bool | None = None, vendor: str | None = None) -> str:
    """The CPU recipe's training precision, ``trainer.precision: ${cpu_precision:}``: "bf16-mixed" on AMD
    cores with AVX-512 BF16, "32-true" everywhere else (or for the features given; vendor as /proc/cpuinfo's
    vendor_id names it).

    Measured (docs/benchmarks.md, "Precision of the CPU recipe"): bf16 autocast trains faster than fp32 on
    AMD's AVX-512 BF16 cores and slower on Intel's, with AMX and without (there AVX-512 BF16's products
    are no faster than fp32's); cores without AVX-512 BF16 emulate bfloat16 matmuls. Set
    ``trainer.precision`` explicitly to override.
    """
    import torch  # only when a config asks

    if avx512_bf16 is None:
        avx512_bf16 = torch.cpu._is_avx512_bf16_supported()
    if amx is None:
        amx = torch.cpu._is_amx_tile_supported()
    if vendor is None:
        vendor = cpu_vendor()
    return "bf16-mixed" if avx512_bf16 and not amx and vendor == "AuthenticAMD" else "32-true"


def cpu_vendor() -> str:
    """The CPU's vendor string (GenuineIntel, AuthenticAMD, ...): /proc/cpuinfo's vendor_id on Linux,
    else the one platform.processor() names (Windows); "" when neither says (torch does not tell)."""
    import platform

    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return next((v for v in ("AuthenticAMD", "GenuineIntel") if v in platform.processor()), "")


def register() -> None:
    """Make the dataclasses Hydra configs (conf/<group>/*.yaml list `base` first in their defaults) and
    register the resolvers the YAML files use: ``${cpu_precision:}``."""
    OmegaConf.register_new_resolver("cpu_precision", cpu_precision, replace=True)
    store = ConfigStore.instance()
    store.store(group="model", name="base", node=ModelConfig)
    store.store(group="decoding", name="base", node=DecodingConfig)
    store.store(group="optim", name="base", node=OptimConfig)
    store.store(group="data/subword_sampling", name="base", node=SubwordSamplingConfig)  # conf/data/multi30k.yaml
    for name, node in (("train", TrainConfig), ("validate", ValidateConfig), ("translate", TranslateConfig),
                       ("evaluate", EvaluateConfig), ("serve", ServeConfig), ("export", ExportConfig)):
        store.store(name=f"{name}_schema", node=node)  # conf/<name>.yaml lists it first in its defaults


register()
