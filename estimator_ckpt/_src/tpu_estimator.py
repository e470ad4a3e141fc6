"""TPUEstimator under TF2 checkpoints: its model_fn, rebuilt for a copy.

`TPUEstimator.__init__` wraps the user's model_fn in `_augment_model_fn`
(tensorflow_estimator/python/estimator/tpu/tpu_estimator.py): a closure over
the user's model_fn, `batch_axis` and the TPUEstimator itself, which puts
`params["batch_size"]` in, tells export from predict by a bit `_call_input_fn`
sets on the instance, and turns a `TPUEstimatorSpec` into an
`EstimatorSpec` (its `scaffold_fn` run on the host). The user's model_fn is
not kept anywhere else.

`rebuild_model_fn` reads the user's model_fn and `batch_axis` from that
closure and augments the wrapped model_fn again, bound to the migrated copy,
so the copy's own bit, context and config are used. The wrapped model_fn
(`migrate.tf2_checkpoints`) replaces the `scaffold_fn` of the
`TPUEstimatorSpec` it returns, keeping what the user's `scaffold_fn` sets;
the saver's retention comes from the TPU `RunConfig` it is passed.

Tested with `use_tpu=False` on CPU (train, evaluate, predict,
`export_saved_model(export_to_tpu=False)`, in-place resume of a TF1 dir):
the model_fn, scaffold_fn and saver are the same on a TPU, but no TPU run
was made.
"""

from typing import Any, Callable, Dict

import tensorflow as tf
from tensorflow_estimator.python.estimator.tpu import tpu_estimator as tpu_lib

from estimator_ckpt import errors

ModelFn = Callable[..., Any]
Wrap = Callable[[ModelFn], ModelFn]


def is_tpu_estimator(estimator: tf.estimator.Estimator) -> bool:
  """Whether `estimator` is a `tf.compat.v1.estimator.tpu.TPUEstimator`."""
  return isinstance(estimator, tpu_lib.TPUEstimator)


def _closure(function: Callable[..., Any]) -> Dict[str, Any]:
  """A closure's free variables by name."""
  cells = function.__closure__ or ()
  return {
    name: cell.cell_contents
    for name, cell in zip(function.__code__.co_freevars, cells)
  }


def rebuild_model_fn(estimator: tf.estimator.Estimator, wrap: Wrap) -> None:
  """Sets the copy's model_fn: its user model_fn wrapped, augmented again.

  Args:
    estimator: A shallow copy of a TPUEstimator.
    wrap: Returns the migrated model_fn for the user's model_fn.

  Raises:
    errors.ArgumentTypeError: The TPUEstimator's model_fn is not the one
      `_augment_model_fn` of tensorflow-estimator 2.15 builds.
  """
  # pylint: disable=protected-access
  closure = _closure(estimator._model_fn)
  if not {"model_fn", "batch_axis", "self"} <= closure.keys():
    raise errors.ArgumentTypeError(
      f"{type(estimator).__name__}'s model_fn {estimator._model_fn} is not "
      "the TPUEstimator._augment_model_fn closure of tensorflow-estimator "
      "2.15 (free variables model_fn, batch_axis, self), so its model_fn "
      "cannot be migrated. Build the TPUEstimator around "
      "estimator_ckpt.tf2_checkpoints(model_fn) instead."
    )
  estimator._model_fn = estimator._augment_model_fn(
    wrap(closure["model_fn"]), closure["batch_axis"]
  )
  # pylint: enable=protected-access
