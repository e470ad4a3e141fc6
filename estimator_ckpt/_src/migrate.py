"""TF2 checkpoints for whole Estimators: a model_fn decorator and a rebuild.

`tf2_checkpoints` wraps any Estimator `model_fn` so its `EstimatorSpec`
carries `scaffold.scaffold()`; `migrate_estimator` rebuilds an Estimator
(canned ones included) around the wrapped model_fn. Both take the saver's
retention from the `RunConfig` Estimator passes, as Estimator's own TF1 saver
does (`keep_checkpoint_max`, `keep_checkpoint_every_n_hours`).
"""

import functools
from typing import Any, Callable, Optional

import tensorflow as tf
from tensorflow.python.util import function_utils

from estimator_ckpt import errors
from estimator_ckpt._src import scaffold

tf1 = tf.compat.v1

ModelFn = Callable[..., tf.estimator.EstimatorSpec]

_RUN_CONFIG_DEFAULTS = {
  "max_to_keep": "keep_checkpoint_max",
  "keep_checkpoint_every_n_hours": "keep_checkpoint_every_n_hours",
}


def _wrap(model_fn: ModelFn, options: dict) -> ModelFn:
  """Returns model_fn with the TF2 scaffold in its EstimatorSpec."""
  accepted = set(function_utils.fn_args(model_fn))

  # Estimator passes `labels`, `mode`, `params` and `config` only to a
  # model_fn that names them, and checks `params` against the signature. The
  # wrapper needs `config` (for the retention defaults), so it names `config`
  # always and `params` exactly when the wrapped model_fn does.
  def call(features, labels, mode, params, config):
    kwargs = {}
    if "labels" in accepted:
      kwargs["labels"] = labels
    elif labels is not None:
      raise errors.InvalidArgumentError(
        "model_fn does not take labels, but input_fn returns labels."
      )
    if "mode" in accepted:
      kwargs["mode"] = mode
    if "params" in accepted:
      kwargs["params"] = params
    if "config" in accepted:
      kwargs["config"] = config
    spec = model_fn(features=features, **kwargs)
    if not isinstance(spec, tf.estimator.EstimatorSpec):
      raise errors.ArgumentTypeError(
        f"estimator_ckpt.tf2_checkpoints supports model_fns returning "
        f"tf.estimator.EstimatorSpec; {model_fn} returned {type(spec)}."
      )
    saver_options = dict(options)
    for option, field in _RUN_CONFIG_DEFAULTS.items():
      if option not in saver_options and config is not None:
        saver_options[option] = getattr(config, field)
    user_scaffold = spec.scaffold
    if user_scaffold is not None and user_scaffold.saver is not None:
      tf1.logging.warning(
        "estimator_ckpt.tf2_checkpoints replaces the saver %s set by the "
        "model_fn with a TF2 checkpoint saver.",
        user_scaffold.saver,
      )
    new_scaffold = scaffold.scaffold(
      copy_from_scaffold=user_scaffold, **saver_options
    )
    return spec._replace(scaffold=new_scaffold)

  # Estimator passes `params` only to a model_fn that names it.
  def with_params(features, labels, mode, params, config):
    return call(features, labels, mode, params, config)

  def without_params(features, labels, mode, config):
    return call(features, labels, mode, None, config)

  return functools.update_wrapper(
    with_params if "params" in accepted else without_params,
    model_fn,
    assigned=("__module__", "__name__", "__qualname__", "__doc__"),
    updated=(),
  )


def tf2_checkpoints(model_fn: Optional[ModelFn] = None, **options) -> Any:
  """Makes a model_fn save TF2 object-based checkpoints.

  Use as `@tf2_checkpoints` or `@tf2_checkpoints(also_write_tf1=True)`, or
  call `tf2_checkpoints(model_fn)`. The model_fn may have any Estimator
  signature (`labels`, `mode`, `params`, `config` optional). The returned
  model_fn keeps every field of its `EstimatorSpec` and of a Scaffold it set
  (init_fn, ready_op, ...); only the saver changes.

  Args:
    model_fn: The model_fn; None when used as `@tf2_checkpoints(...)`.
    **options: Keyword arguments of `estimator_ckpt.scaffold()`.
      `max_to_keep` and `keep_checkpoint_every_n_hours` default to the
      `RunConfig`'s `keep_checkpoint_max` and `keep_checkpoint_every_n_hours`.

  Returns:
    The wrapped model_fn, or a decorator when `model_fn` is None.
  """
  if "saver" in options:
    raise errors.ArgumentTypeError(
      "tf2_checkpoints provides the saver; do not pass `saver`."
    )
  if model_fn is None:
    return lambda fn: _wrap(fn, options)
  return _wrap(model_fn, options)


def migrate_estimator(
  estimator: tf.estimator.Estimator, **options
) -> tf.estimator.Estimator:
  """The same Estimator, saving TF2 object-based checkpoints.

  Same model_fn, model_dir, config, params and warm start; works for canned
  estimators (DNNClassifier, LinearRegressor, DNNLinearCombinedClassifier,
  ...). If model_dir holds TF1 checkpoints, training resumes from them by
  name and the next save is TF2.

  `get_variable_names()` of the result lists checkpoint keys: TF2 keys
  (`var_list/<escaped name>/.ATTRIBUTES/VARIABLE_VALUE`), `global_step` and
  `_CHECKPOINTABLE_OBJECT_GRAPH`; `get_variable_value()` takes those keys.
  For TF1 names in either format, use `estimator_ckpt.keys.variable_key`.

  Args:
    estimator: A `tf.estimator.Estimator`.
    **options: Keyword arguments of `estimator_ckpt.scaffold()`.

  Returns:
    A new `tf.estimator.Estimator`.
  """
  # pylint: disable=protected-access
  return tf.estimator.Estimator(
    model_fn=tf2_checkpoints(estimator._model_fn, **options),
    model_dir=estimator.model_dir,
    config=estimator.config,
    params=estimator.params or None,
    warm_start_from=estimator._warm_start_settings,
  )
  # pylint: enable=protected-access
