"""estimator_ckpt: TF2 object-based checkpoints for tf.estimator models.

The public API is what this module exports; see README.md. Exports load on
first use (PEP 562 module `__getattr__`): importing any `tensorflow.*` module
loads all of TensorFlow (seconds, hundreds of MB), and the checkpoint tools
(`checkpoint_format`, `list_variables`, `load_variable`, `convert`, `verify`
and their binaries) never need it, so `import estimator_ckpt` must not pull it
in through an unrelated export.
"""

import importlib
from typing import Any, List

# Public name -> the submodule that defines it (itself, for modules).
_EXPORTS = {
    "errors": "errors",
    "keys": "keys",
    "checkpoint_format": "inspection",
    "list_variables": "inspection",
    "load_variable": "inspection",
    "convert": "conversion",
    "verify": "verification",
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
  module_name = _EXPORTS.get(name)
  if module_name is None:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  module = importlib.import_module(f"{__name__}.{module_name}")
  value = module if name == module_name else getattr(module, name)
  globals()[name] = value
  return value


def __dir__() -> List[str]:
  return sorted(set(globals()) | set(__all__))
