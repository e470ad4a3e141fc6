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
}

__all__ = [
    "checkpoint_format",
    "convert",
    "errors",
    "keys",
    "list_variables",
    "load_variable",
    "verify",
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
