"""estimator_ckpt: TF2 object-based checkpoints for tf.estimator models.

The public API is what this module exports; see README.md.
"""

from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt.checkpoint_flags import CheckpointSettings
from estimator_ckpt.checkpoint_flags import checkpoint_settings_from_flags
from estimator_ckpt.checkpoint_flags import define_checkpoint_flags
from estimator_ckpt.migration import migrate_estimator
from estimator_ckpt.migration import tf2_checkpoints
from estimator_ckpt.scaffolding import scaffold
from estimator_ckpt.scaffolding import Tf2Saver
from estimator_ckpt.warm_starting import warm_start
from estimator_ckpt.warm_starting import warm_start_settings
from estimator_ckpt.warm_starting import WarmStartSummary

__all__ = [
    "CheckpointSettings",
    "Tf2Saver",
    "WarmStartSummary",
    "checkpoint_settings_from_flags",
    "define_checkpoint_flags",
    "errors",
    "keys",
    "migrate_estimator",
    "scaffold",
    "tf2_checkpoints",
    "warm_start",
    "warm_start_settings",
]
