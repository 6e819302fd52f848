"""Typed settings: each default and each check lives here, once.

The dataclasses are registered with Hydra's ConfigStore (``register()``), so that ``conf/`` YAML files
carry only what differs from these defaults and Hydra rejects a wrong type or an unknown key. Range
and choice checks run in ``__post_init__``: building the object (``OmegaConf.to_object`` of a composed
node, or a plain call from Python) is the check, and a bad value raises ``ConfigError`` naming the key.
"""
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf


class ConfigError(ValueError):
    """A setting with a bad value, reported as ``<group>.<key> must ..., got ...``."""


def _integer(group: str, key: str, value: object, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{group}.{key} must be an integer >= {low}, got {value!r}")


def _number(group: str, key: str, value: object, ok: Callable[[float], bool], wanted: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ConfigError(f"{group}.{key} must be a number {wanted}, got {value!r}")


def _flag(group: str, key: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{group}.{key} must be true or false, got {value!r}")


def _choice(group: str, key: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{group}.{key} must be one of {list(choices)}, got {value!r}")


ATTENTION_CHOICES = ("luong", "bahdanau", "none")


@dataclass
class ModelConfig:
    """The encoder's ``nn.GRU`` knobs, and the decoder's where they differ.

    input_size is the embedding size (the GRU's input_size); dropout acts on embeddings, between
    stacked GRU layers and on the readout; decoder_hidden_size None = D * hidden_size (D = 2 when
    bidirectional), decoder_num_layers None = num_layers.
    """
    input_size: int = 256
    hidden_size: int = 256
    num_layers: int = 1
    dropout: float = 0.3
    bias: bool = True
    bidirectional: bool = True
    decoder_hidden_size: int | None = None
    decoder_num_layers: int | None = None
    attention: str = "luong"
    tie_embeddings: bool = True   # source and target share one embedding (needs a joint vocabulary)
    tie_output: bool = True       # the output projection shares the target embedding

    def __post_init__(self) -> None:
        for key in ("input_size", "hidden_size", "num_layers", "decoder_hidden_size", "decoder_num_layers"):
            value = getattr(self, key)
            if not (key.startswith("decoder_") and value is None):
                _integer("model", key, value)
        _number("model", "dropout", self.dropout, lambda x: 0 <= x < 1, "in [0, 1)")
        for key in ("bias", "bidirectional", "tie_embeddings", "tie_output"):
            _flag("model", key, getattr(self, key))
        _choice("model", "attention", self.attention, ATTENTION_CHOICES)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

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
    beam_size: int = 5
    alpha: float = 1.0
    max_len: int = 200
    n_best: int = 1

    def __post_init__(self) -> None:
        _integer("decoding", "beam_size", self.beam_size)
        _number("decoding", "alpha", self.alpha, lambda x: x >= 0, ">= 0 (length penalty)")
        _integer("decoding", "max_len", self.max_len)
        _integer("decoding", "n_best", self.n_best)
        if self.n_best > self.beam_size:
            raise ConfigError(f"n_best must be <= beam_size (a beam keeps beam_size hypotheses), "
                              f"got n_best={self.n_best} with beam_size={self.beam_size}")


SCHEDULES = ("plateau", "inverse_sqrt", "cosine", "constant")


@dataclass
class OptimConfig:
    """Adam and its learning-rate schedule (see seq2seq/schedules.py).

    plateau multiplies the rate by `factor` after `patience` validations without a better val BLEU;
    inverse_sqrt and cosine warm up over `warmup_steps`; cosine ends at `min_lr`.
    """
    lr: float = 1.0e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    schedule: str = "plateau"
    factor: float = 0.5
    patience: int = 1
    min_lr: float = 1.0e-5
    warmup_steps: int = 1000

    def __post_init__(self) -> None:
        _number("optim", "lr", self.lr, lambda x: x > 0, "> 0")
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)!r}")
        for beta in self.betas:
            _number("optim", "betas", beta, lambda x: 0 <= x < 1, "in [0, 1)")
        _number("optim", "weight_decay", self.weight_decay, lambda x: x >= 0, ">= 0")
        _choice("optim", "schedule", self.schedule, SCHEDULES)
        _number("optim", "factor", self.factor, lambda x: 0 < x < 1, "in (0, 1)")
        _integer("optim", "patience", self.patience, low=0)
        _number("optim", "min_lr", self.min_lr, lambda x: x >= 0, ">= 0")
        _integer("optim", "warmup_steps", self.warmup_steps)


def from_dict(cls: type, values: dict, group: str):
    """A config object from a plain dict (a model file's, a checkpoint's), unknown keys named."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{group}: unknown setting(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


def cpu_precision(avx512_bf16: bool | None = None, amx: bool | None = None) -> str:
    """The CPU recipe's training precision, ``trainer.precision: ${cpu_precision:}``: "bf16-mixed" where the
    cores have AVX-512 BF16 and no AMX, "32-true" everywhere else (or for the features given).

    Measured on both kinds of server CPU (docs/benchmarks.md): bf16 autocast trains faster than fp32 on
    AVX-512 BF16 cores without AMX and slower on Intel's AMX cores; cores without AVX-512 BF16 emulate
    bfloat16 matmuls. Set ``trainer.precision`` explicitly to override.
    """
    import torch  # only when a config asks

    if avx512_bf16 is None:
        avx512_bf16 = torch.cpu._is_avx512_bf16_supported()
    if amx is None:
        amx = torch.cpu._is_amx_tile_supported()
    return "bf16-mixed" if avx512_bf16 and not amx else "32-true"


def register() -> None:
    """Make the dataclasses Hydra configs (conf/<group>/*.yaml list `base` first in their defaults) and
    register the resolvers the YAML files use: ``${cpu_precision:}``."""
    OmegaConf.register_new_resolver("cpu_precision", cpu_precision, replace=True)
    store = ConfigStore.instance()
    store.store(group="model", name="base", node=ModelConfig)
    store.store(group="decoding", name="base", node=DecodingConfig)
    store.store(group="optim", name="base", node=OptimConfig)


register()
