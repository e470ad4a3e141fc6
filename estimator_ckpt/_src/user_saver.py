"""A saver a model_fn sets in its Scaffold, as options of the TF2 saver.

A model_fn may set its own `tf.compat.v1.train.Saver` in
`EstimatorSpec(scaffold=Scaffold(saver=...))`. The standard case serves
exponential-moving-average weights:
`Saver(ema.variables_to_restore())` maps each shadow's checkpoint name
(`dense/kernel/ExponentialMovingAverage`) to the raw variable, so inference
restores the averages into the weights. Stock Estimator restores with that
saver in every mode (`MonitoredSession` through the Scaffold, and
`export_saved_model`, which restores with `scaffold.saver` and writes it into
the SavedModel), and saves with it in training (`CheckpointSaverHook`, with
the saver's retention).

`saver_options` turns such a saver into the options of
`scaffold.scaffold()`: its var_list (a `{name: variable}` dict, a list, a
subset) becomes the TF2 saver's, so restore reads the same checkpoint
entries, by the same TF1 names (`var_list/<name>` in a TF2 checkpoint, the
name itself in a TF1 one), into the same variables as the stock saver; its
retention (`max_to_keep`, `keep_checkpoint_every_n_hours`) replaces
RunConfig's, as in stock Estimator, unless the caller gave it.
"""

from typing import Any, Dict, Optional

import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint as checkpoint_lib
from tensorflow.python.training import saver as saver_lib

from estimator_ckpt import errors
from estimator_ckpt._src import scaffold

tf1 = tf.compat.v1


def writes_tf2(saver: Optional[Any]) -> bool:
  """Whether a model_fn's saver already writes object-based checkpoints.

  A `Tf2Saver` (the model_fn called `scaffold()` itself) or a
  `tf.train.Checkpoint` (stock Estimator turns it into a Saver over its
  object-based keys, estimator.py `_add_meta_graph_for_mode` and
  monitored_session.py `Scaffold.finalize`): both are kept as they are.
  """
  return isinstance(
    saver,
    (scaffold.Tf2Saver, checkpoint_lib.Checkpoint, checkpoint_lib.CheckpointV1),
  )


def saver_options(saver: Optional[Any]) -> Dict[str, Any]:
  """Options of `scaffold.scaffold()` that keep what `saver` saves.

  Args:
    saver: The `saver` of the Scaffold a model_fn returned, or None.

  Returns:
    `{}` for no saver; else `var_list` (when the saver was given one, or
    has been built), `max_to_keep` and `keep_checkpoint_every_n_hours` of the
    saver.

  Raises:
    errors.ArgumentTypeError: The saver is not a `tf.compat.v1.train.Saver`
      (`writes_tf2` savers are kept as they are, not passed here).
  """
  if saver is None:
    return {}
  if not isinstance(saver, saver_lib.Saver):
    raise errors.ArgumentTypeError(
      f"The model_fn's Scaffold sets saver={saver!r}, a "
      f"{type(saver).__name__}; estimator_ckpt.tf2_checkpoints turns a "
      "tf.compat.v1.train.Saver into a TF2 saver with the same var_list, "
      "and keeps a tf.train.Checkpoint or an estimator_ckpt.Tf2Saver. Set "
      "one of those (or estimator_ckpt.scaffold(var_list=...))."
    )
  # pylint: disable=protected-access
  # `Saver.__init__` keeps its arguments as these attributes
  # (tensorflow/python/training/saver.py); a built Saver whose var_list was
  # None holds what it saved (`variables._all_saveable_objects()`), so the
  # TF2 saver saves the same set.
  var_list = saver._var_list
  options: Dict[str, Any] = {
    "max_to_keep": saver._max_to_keep,
    "keep_checkpoint_every_n_hours": saver._keep_checkpoint_every_n_hours,
  }
  # pylint: enable=protected-access
  if var_list is not None:
    options["var_list"] = var_list
  tf1.logging.info(
    "estimator_ckpt: the model_fn's saver %s becomes a TF2 saver of the "
    "same %s.",
    saver,
    "variables" if var_list is None else f"{len(var_list)} var_list entries",
  )
  return options
