"""estimator_ckpt: TF2 object-based checkpoints for tf.estimator models.

The public API is what this module exports; see README.md.
"""

from estimator_ckpt import errors
from estimator_ckpt import keys

__all__ = [
    "errors",
    "keys",
]
