"""What the run scripts build from a composed config: the checked settings, the Trainer with its callbacks
and loggers, and any ``_target_`` group (train.py and validate.py share them)."""
from collections.abc import Sequence

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from seq2seq.config import ConfigError, TrainConfig


def check_settings(cfg: DictConfig) -> None:
    """The settings that no constructor checks before work starts: the typed groups (building them runs
    their checks) and the top-level keys. Data, trainer, callbacks and loggers are checked as they are
    built (instantiate_group), before the tokenizer is trained."""
    for group in ("model", "optim", "decoding"):
        OmegaConf.to_object(cfg[group])
    TrainConfig.check(cfg)


def instantiate_group(node: DictConfig, group: str, **kwargs):
    """hydra.utils.instantiate; a constructor rejecting the settings becomes one ConfigError naming the group."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, (ValueError, TypeError, MisconfigurationException)):
            raise ConfigError(f"{group}: {cause}") from e
        raise


def make_trainer(cfg: DictConfig, extra_callbacks: Sequence[Callback] = ()) -> L.Trainer:
    """The configured Trainer with its callbacks and loggers, rooted in the run folder."""
    callbacks = [instantiate_group(c, f"callbacks.{name}") for name, c in (cfg.get("callbacks") or {}).items()
                 if c is not None]
    loggers = [instantiate_group(c, f"logger.{name}") for name, c in (cfg.get("logger") or {}).items() if c is not None]
    return instantiate_group(cfg.trainer, "trainer", callbacks=[*callbacks, *extra_callbacks], logger=loggers or False,
                             default_root_dir=str(cfg.paths.run_dir))
