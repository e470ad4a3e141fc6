"""TF2 checkpoints for whole Estimators: a model_fn decorator and a rebuild.

`tf2_checkpoints` wraps any Estimator `model_fn` so its `EstimatorSpec`
carries `scaffold.scaffold()`; `migrate_estimator` rebuilds an Estimator
(canned ones included) around the wrapped model_fn. Both take the saver's
retention from the `RunConfig` Estimator passes, as Estimator's own TF1 saver
does (`keep_checkpoint_max`, `keep_checkpoint_every_n_hours`).

The Estimator `migrate_estimator` returns also answers `get_variable_names()`
and `get_variable_value(name)` by TF1 variable name, whatever the format of
the checkpoint in model_dir, through `reader` (`layouts` decides which keys
hold each name). Estimator forbids subclasses to override those methods
(`_assert_members_are_not_overridden`), so they are set on the instance.
"""

import functools
import re
from typing import Any, Callable, List, Optional

import numpy as np
import tensorflow as tf
from tensorflow.python.util import function_utils

from estimator_ckpt import errors
from estimator_ckpt._src import async_hook
from estimator_ckpt._src import reader
from estimator_ckpt._src import scaffold

tf1 = tf.compat.v1

ModelFn = Callable[..., tf.estimator.EstimatorSpec]

_RUN_CONFIG_DEFAULTS = {
  "max_to_keep": "keep_checkpoint_max",
  "keep_checkpoint_every_n_hours": "keep_checkpoint_every_n_hours",
}

# `gs://bucket/dir`, `hdfs://...`: file systems only TensorFlow reads.
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


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
    if mode != tf.estimator.ModeKeys.TRAIN:
      # Only training saves; evaluation and export graphs get no snapshot.
      saver_options.pop("async_save", None)
    new_scaffold = scaffold.scaffold(
      copy_from_scaffold=user_scaffold, **saver_options
    )
    spec = spec._replace(scaffold=new_scaffold)
    if saver_options.get("async_save"):
      spec = _with_async_hook(spec, config)
    return spec

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


def _with_async_hook(
  spec: tf.estimator.EstimatorSpec, config: Any
) -> tf.estimator.EstimatorSpec:
  """Adds the hook that saves in the background, as Estimator would its own.

  Estimator makes a `CheckpointSaverHook` from the RunConfig unless the spec
  has one (`_train_with_estimator_spec`), and attaches `saving_listeners` to
  the first it finds; an `AsyncCheckpointSaverHook` with the same schedule
  takes its place. A model_fn that brings its own saver hook keeps it (and
  saves synchronously).
  """
  hooks = list(spec.training_hooks) + list(spec.training_chief_hooks)
  if config is None or any(
    isinstance(h, tf1.train.CheckpointSaverHook) for h in hooks
  ):
    return spec
  if not (config.save_checkpoints_steps or config.save_checkpoints_secs):
    return spec
  hook = async_hook.AsyncCheckpointSaverHook(
    config.model_dir,
    save_secs=config.save_checkpoints_secs,
    save_steps=config.save_checkpoints_steps,
    scaffold=spec.scaffold,
    save_graph_def=config.checkpoint_save_graph_def,
  )
  return spec._replace(
    training_chief_hooks=(hook,) + tuple(spec.training_chief_hooks)
  )


def tf2_checkpoints(model_fn: Optional[ModelFn] = None, **options) -> Any:
  """Makes a model_fn save TF2 object-based checkpoints.

  Use as `@tf2_checkpoints` or `@tf2_checkpoints(also_write_tf1=True)`, or
  call `tf2_checkpoints(model_fn)`. The model_fn may have any Estimator
  signature (`labels`, `mode`, `params`, `config` optional). The returned
  model_fn keeps every field of its `EstimatorSpec` and of a Scaffold it set
  (init_fn, ready_op, ...); only the saver changes.

  A `tf.estimator.Estimator` you build around the wrapped model_fn keeps
  stock `get_variable_names()` and `get_variable_value()`: a model_fn cannot
  change the Estimator's methods, so they list and take the checkpoint's
  raw index keys (TF2 keys such as `var_list/<escaped name>/.ATTRIBUTES/
  VARIABLE_VALUE`, `_CHECKPOINTABLE_OBJECT_GRAPH`, ...). Read by TF1 name with
  `estimator_ckpt.list_variables(est.model_dir)` and
  `estimator_ckpt.load_variable(est.model_dir, name)`, or build the
  Estimator with `migrate_estimator`, whose methods take TF1 names.

  Args:
    model_fn: The model_fn; None when used as `@tf2_checkpoints(...)`.
    **options: Keyword arguments of `estimator_ckpt.scaffold()`. With
      `async_save=True`, training mode also gets an
      `estimator_ckpt.AsyncCheckpointSaverHook` on the RunConfig's schedule
      (`save_checkpoints_steps`/`_secs`), so saves do not block training.
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

  The result reads its checkpoints by TF1 variable name, as the Estimator
  did before migration, whichever format model_dir holds:

  * `get_variable_names()` returns what a stock Estimator of the same model
    returns for a TF1 checkpoint: every variable's TF1 name once (optimizer
    slots and `global_step` included, a partitioned variable under its own
    name), sorted. TF2 keys (`var_list/...`), `_CHECKPOINTABLE_OBJECT_GRAPH`
    and `save_counter` are not variables and are not listed.
  * `get_variable_value(name)` takes a TF1 name (`dnn/hiddenlayer_0/kernel`,
    with or without `:0`, as stock) and returns the value as stock does, a
    partitioned variable whole; it also still takes a raw checkpoint key
    (`var_list/dense.Skernel/.ATTRIBUTES/VARIABLE_VALUE`). Names no layout
    holds raise what stock raises (`tf.errors.NotFoundError`).

  Both read local paths (`estimator_ckpt.list_variables` and
  `load_variable`); for a model_dir with a URL scheme (`gs://...`) they
  behave as stock Estimator's, which lists raw keys. So do
  `tf.estimator.Estimator`s you build yourself around a `tf2_checkpoints`
  model_fn: Estimator's methods cannot be replaced from a model_fn, so read
  those by name with `estimator_ckpt.load_variable(est.model_dir, name)`.

  Args:
    estimator: A `tf.estimator.Estimator`.
    **options: Keyword arguments of `estimator_ckpt.scaffold()`.

  Returns:
    A new `tf.estimator.Estimator`.
  """
  # pylint: disable=protected-access
  migrated = tf.estimator.Estimator(
    model_fn=tf2_checkpoints(estimator._model_fn, **options),
    model_dir=estimator.model_dir,
    config=estimator.config,
    params=estimator.params or None,
    warm_start_from=estimator._warm_start_settings,
  )
  # pylint: enable=protected-access
  _read_by_tf1_name(migrated)
  return migrated


def _read_by_tf1_name(estimator: tf.estimator.Estimator) -> None:
  """Makes `estimator` list and read its checkpoints by TF1 variable name.

  Sets `get_variable_names` and `get_variable_value` on the instance (a
  subclass may not override them; see the module docstring). Whatever they
  do not handle goes to the stock methods, so their errors stay Estimator's:
  no checkpoint yet (`ValueError`), a non-string name, a model_dir with a URL
  scheme, a name no layout of the checkpoint holds.
  """
  stock_names = estimator.get_variable_names
  stock_value = estimator.get_variable_value

  def readable() -> bool:
    model_dir = estimator.model_dir
    return (
      not _URL_SCHEME.match(model_dir)
      and tf.train.latest_checkpoint(model_dir) is not None
    )

  def get_variable_names() -> List[str]:
    """TF1 names of the latest checkpoint's variables (see migrate_estimator).

    Returns:
      Sorted TF1 variable names, as a stock Estimator lists a TF1 checkpoint.

    Raises:
      ValueError: The Estimator has not produced a checkpoint yet.
    """
    if not readable():
      return stock_names()
    return [name for name, _ in reader.list_variables(estimator.model_dir)]

  def get_variable_value(name: str) -> Any:
    """A variable's value by TF1 name or raw key (see migrate_estimator).

    Args:
      name: A TF1 variable name (`:0` suffix optional) or a checkpoint key.

    Returns:
      The value as a numpy array (a numpy scalar for a scalar, as stock).

    Raises:
      ValueError: The Estimator has not produced a checkpoint yet.
      tf.errors.NotFoundError: The checkpoint holds no such name or key.
    """
    if not isinstance(name, str) or not readable():
      return stock_value(name)
    # Stock `tf.train.load_variable` drops the tensor suffix the same way.
    tf1_name = name[: -len(":0")] if name.endswith(":0") else name
    try:
      value = reader.load_variable(estimator.model_dir, tf1_name)
    except errors.VariableNotFoundError:
      return stock_value(name)
    if isinstance(value, np.ndarray) and not value.shape:
      return value[()]  # A numpy scalar (or `bytes`), as stock returns it.
    return value

  estimator.get_variable_names = get_variable_names
  estimator.get_variable_value = get_variable_value
