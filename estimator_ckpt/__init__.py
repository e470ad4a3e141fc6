"""estimator_ckpt: TF2 object-based checkpoints for tf.estimator models.

The public API is what this module exports; see README.md.
"""

from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt.migration import migrate_estimator
from estimator_ckpt.migration import tf2_checkpoints
from estimator_ckpt.scaffold import scaffold
from estimator_ckpt.scaffold import Tf2Saver

__all__ = [
    "errors",
    "keys",
    "migrate_estimator",
    "scaffold",
    "tf2_checkpoints",
    "Tf2Saver",
]
