"""estimator_ckpt: TF2 object-based checkpoints for tf.estimator models.

The public API is what this module exports; see README.md. Exports load on
first use (PEP 562 module `__getattr__`): importing any `tensorflow.*` module
loads all of TensorFlow (seconds, hundreds of MB), and the checkpoint tools
(`checkpoint_format`, `list_variables`, `load_variable`, `convert`, `verify`
and their binaries) never need it, so `import estimator_ckpt` must not pull it
in through an unrelated export.
"""

import importlib
from typing import Any, List, Optional, Tuple

# Public name -> (submodule, attribute; None to export the submodule itself).
# An exported function named like a submodule shadows that submodule for
# `from estimator_ckpt import <name>`, which then returns the function: give
# modules other names (hence conversion.py for `convert`).
_EXPORTS: dict[str, Tuple[str, Optional[str]]] = {
    "errors": ("errors", None),
    "keys": ("keys", None),
    "checkpoint_format": ("inspection", "checkpoint_format"),
    "list_variables": ("inspection", "list_variables"),
    "load_variable": ("inspection", "load_variable"),
    "convert": ("conversion", "convert"),
    "verify": ("verification", "verify"),
    # The Scaffold factory and Estimator migration.
    "scaffold": ("scaffolding", "scaffold"),
    "Tf2Saver": ("scaffolding", "Tf2Saver"),
    "tf2_checkpoints": ("migration", "tf2_checkpoints"),
    "migrate_estimator": ("migration", "migrate_estimator"),
    # The warm-start bridge and the flags for absl binaries.
    "warm_start_settings": ("warm_starting", "warm_start_settings"),
    "warm_start": ("warm_starting", "warm_start"),
    "WarmStartSummary": ("warm_starting", "WarmStartSummary"),
    "define_checkpoint_flags": ("checkpoint_flags", "define_checkpoint_flags"),
    "checkpoint_settings_from_flags": ("checkpoint_flags",
                                       "checkpoint_settings_from_flags"),
    "CheckpointSettings": ("checkpoint_flags", "CheckpointSettings"),
}

__all__ = [
    "CheckpointSettings",
    "Tf2Saver",
    "WarmStartSummary",
    "checkpoint_format",
    "checkpoint_settings_from_flags",
    "convert",
    "define_checkpoint_flags",
    "errors",
    "keys",
    "list_variables",
    "load_variable",
    "migrate_estimator",
    "scaffold",
    "tf2_checkpoints",
    "verify",
    "warm_start",
    "warm_start_settings",
]


def __getattr__(name: str) -> Any:
  if name not in _EXPORTS:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  module_name, attribute = _EXPORTS[name]
  module = importlib.import_module(f"{__name__}.{module_name}")
  value = module if attribute is None else getattr(module, attribute)
  globals()[name] = value
  return value


def __dir__() -> List[str]:
  return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})
