"""`migrate_estimator`'s result: an Estimator of its argument's own class.

An Estimator's class carries behaviour beyond its model_fn: `KMeans` answers
`cluster_centers()`, `score()`, `predict_cluster_index()`, `transform()` and
has class constants; TF1 canned classes have `export_savedmodel`;
`TPUEstimator` batches by `params["batch_size"]` and exports for TPU; a
user's subclass has its own methods. Rebuilding a plain `Estimator` around
the model_fn loses all of it, and a class's constructor cannot be rerun
(its arguments are not kept).

So the migrated Estimator is a shallow copy (`copy.copy`) of the argument:
the same class, every instance attribute (config, params, model_dir, warm
start, a subclass's own) the same object, and only the model_fn replaced by
the wrapped one. `Estimator.__init__` does not run again, so neither does
its `_assert_members_are_not_overridden` (nothing is overridden: the copy's
class is the argument's). Estimator derives nothing else from the model_fn
at construction (`estimator.py`: `_verify_model_fn_args`, then
`self._model_fn = model_fn`), so every method, the class's own included,
runs the wrapped model_fn through `Estimator._call_model_fn`.

TPUEstimator's model_fn is a closure over the Estimator itself
(`tpu_estimator.py` `_augment_model_fn`: the bit that tells export from
predict, the TPU context); it is rebuilt for the copy (`tpu_estimator`).
A user's subclass whose own model_fn closes over `self` in the same way
keeps reading the original instance's attributes (see the README).
"""

import copy

import tensorflow as tf

from estimator_ckpt._src import tpu_estimator

Wrap = tpu_estimator.Wrap

# Set on the instance by a previous migration (`migrate._read_by_tf1_name`);
# the copy gets its own, bound to itself.
_INSTANCE_METHODS = ("get_variable_names", "get_variable_value")


def copy_with_model_fn(
  estimator: tf.estimator.Estimator, wrap: Wrap
) -> tf.estimator.Estimator:
  """A shallow copy of `estimator` whose model_fn is `wrap(model_fn)`.

  Args:
    estimator: Any `tf.estimator.Estimator` (v1 or v2, canned, TPU, a
      user's subclass).
    wrap: Returns the migrated model_fn for the estimator's model_fn.

  Returns:
    An Estimator of `type(estimator)`.
  """
  # pylint: disable=protected-access
  migrated = copy.copy(estimator)
  for name in _INSTANCE_METHODS:
    migrated.__dict__.pop(name, None)
  # Estimator hands out deep copies of its params; the copy's own dict keeps
  # the two instances independent should either be changed.
  migrated._params = copy.deepcopy(estimator._params)
  if tpu_estimator.is_tpu_estimator(estimator):
    tpu_estimator.rebuild_model_fn(migrated, wrap)
  else:
    migrated._model_fn = wrap(estimator._model_fn)
  # pylint: enable=protected-access
  return migrated
