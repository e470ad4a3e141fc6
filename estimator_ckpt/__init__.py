"""estimator_ckpt: TF2 object-based checkpoints for tf.estimator models.

The public API is what this module exports (`__all__`); see README.md. The
implementation lives in the private `estimator_ckpt._src` package, whose
modules may change without notice.

Exports load on first use (PEP 562 module `__getattr__`): importing any
`tensorflow.*` module loads all of TensorFlow (seconds, hundreds of MB), and
the checkpoint tools (`checkpoint_format`, `list_variables`, `load_variable`,
`convert`, `verify` and their binaries) never need it, so
`import estimator_ckpt` must not pull it in through an unrelated export. Type
checkers and IDEs read the same exports from the `TYPE_CHECKING` block below.
"""

import importlib
from typing import Any, Dict, List, Optional, Tuple, TYPE_CHECKING

__version__ = "0.2.0"

if TYPE_CHECKING:
  # pylint: disable=g-bad-import-order,g-import-not-at-top,useless-import-alias
  from estimator_ckpt import errors as errors
  from estimator_ckpt import keys as keys
  from estimator_ckpt._src.async_hook import (
    AsyncCheckpointSaverHook as AsyncCheckpointSaverHook,
  )
  from estimator_ckpt._src.checkpoint_flags import (
    checkpoint_settings_from_flags as checkpoint_settings_from_flags,
  )
  from estimator_ckpt._src.checkpoint_flags import (
    CheckpointSettings as CheckpointSettings,
  )
  from estimator_ckpt._src.checkpoint_flags import (
    define_checkpoint_flags as define_checkpoint_flags,
  )
  from estimator_ckpt._src.convert import convert as convert
  from estimator_ckpt._src.keras.load import load_weights as load_weights
  from estimator_ckpt._src.keras.load import LoadReport as LoadReport
  from estimator_ckpt._src.migrate import migrate_estimator as migrate_estimator
  from estimator_ckpt._src.migrate import tf2_checkpoints as tf2_checkpoints
  from estimator_ckpt._src.reader import checkpoint_format as checkpoint_format
  from estimator_ckpt._src.reader import list_variables as list_variables
  from estimator_ckpt._src.reader import load_variable as load_variable
  from estimator_ckpt._src.scaffold import scaffold as scaffold
  from estimator_ckpt._src.tf2_saver import Tf2Saver as Tf2Saver
  from estimator_ckpt._src.verify import verify as verify
  from estimator_ckpt._src.warm_start import warm_start as warm_start
  from estimator_ckpt._src.warm_start import (
    warm_start_settings as warm_start_settings,
  )
  from estimator_ckpt._src.warm_start_plan import (
    WarmStartSummary as WarmStartSummary,
  )

# Public name -> (module, attribute; None to export the module itself).
_EXPORTS: Dict[str, Tuple[str, Optional[str]]] = {
  "errors": ("estimator_ckpt.errors", None),
  "keys": ("estimator_ckpt.keys", None),
  # The checkpoint tools (no TensorFlow).
  "checkpoint_format": ("estimator_ckpt._src.reader", "checkpoint_format"),
  "list_variables": ("estimator_ckpt._src.reader", "list_variables"),
  "load_variable": ("estimator_ckpt._src.reader", "load_variable"),
  "convert": ("estimator_ckpt._src.convert", "convert"),
  "verify": ("estimator_ckpt._src.verify", "verify"),
  # The Scaffold factory and Estimator migration.
  "scaffold": ("estimator_ckpt._src.scaffold", "scaffold"),
  "Tf2Saver": ("estimator_ckpt._src.tf2_saver", "Tf2Saver"),
  "AsyncCheckpointSaverHook": (
    "estimator_ckpt._src.async_hook",
    "AsyncCheckpointSaverHook",
  ),
  "tf2_checkpoints": ("estimator_ckpt._src.migrate", "tf2_checkpoints"),
  "migrate_estimator": ("estimator_ckpt._src.migrate", "migrate_estimator"),
  # The warm-start bridge and the flags for absl binaries.
  "warm_start_settings": (
    "estimator_ckpt._src.warm_start",
    "warm_start_settings",
  ),
  "warm_start": ("estimator_ckpt._src.warm_start", "warm_start"),
  "WarmStartSummary": (
    "estimator_ckpt._src.warm_start_plan",
    "WarmStartSummary",
  ),
  "define_checkpoint_flags": (
    "estimator_ckpt._src.checkpoint_flags",
    "define_checkpoint_flags",
  ),
  "checkpoint_settings_from_flags": (
    "estimator_ckpt._src.checkpoint_flags",
    "checkpoint_settings_from_flags",
  ),
  "CheckpointSettings": (
    "estimator_ckpt._src.checkpoint_flags",
    "CheckpointSettings",
  ),
  # Leaving Estimator: its checkpoints into Keras models and optimizers.
  "load_weights": ("estimator_ckpt._src.keras.load", "load_weights"),
  "LoadReport": ("estimator_ckpt._src.keras.load", "LoadReport"),
}

__all__ = [
  "AsyncCheckpointSaverHook",
  "CheckpointSettings",
  "LoadReport",
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
  "load_weights",
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
  module = importlib.import_module(module_name)
  value = module if attribute is None else getattr(module, attribute)
  globals()[name] = value
  return value


def __dir__() -> List[str]:
  return sorted(set(__all__) | {n for n in globals() if n.startswith("__")})
