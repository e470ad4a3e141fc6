"""TF2 checkpoints for whole Estimators: a model_fn decorator and a copy.

`tf2_checkpoints` wraps any Estimator `model_fn` so its `EstimatorSpec` (or
`TPUEstimatorSpec`) carries `scaffold.scaffold()`; `migrate_estimator`
copies an Estimator of any class with the wrapped model_fn
(`estimator_class`). Both take the saver's
retention from the `RunConfig` Estimator passes, as Estimator's own TF1 saver
does (`keep_checkpoint_max`, `keep_checkpoint_every_n_hours`).

The Estimator `migrate_estimator` returns also answers `get_variable_names()`
and `get_variable_value(name)` by TF1 variable name, whatever the format of
the checkpoint in model_dir, through `reader` (`layouts` decides which keys
hold each name). Estimator forbids subclasses to override those methods
(`_assert_members_are_not_overridden`), so they are set on the instance.
"""

import functools
from typing import Any, Callable, List, Mapping, Optional

import numpy as np
import tensorflow as tf
from tensorflow.python.util import function_utils
from tensorflow_estimator.python.estimator import model_fn as model_fn_lib

from estimator_ckpt import errors
from estimator_ckpt._src import async_spec
from estimator_ckpt._src import estimator_class
from estimator_ckpt._src import reader
from estimator_ckpt._src import scaffold
from estimator_ckpt._src import user_saver
from estimator_ckpt._src.storage import registry

ModelFn = Callable[..., tf.estimator.EstimatorSpec]

_RUN_CONFIG_DEFAULTS = {
  "max_to_keep": "keep_checkpoint_max",
  "keep_checkpoint_every_n_hours": "keep_checkpoint_every_n_hours",
}


def _wrap(model_fn: ModelFn, options: dict) -> ModelFn:
  """model_fn with the TF2 scaffold in its EstimatorSpec (or scaffold_fn)."""
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
    spec_options = dict(options)
    if mode != tf.estimator.ModeKeys.TRAIN:
      # Only training saves: evaluation and export graphs get no snapshot
      # from these options (a saver the model_fn set is kept as it is).
      spec_options.pop("async_save", None)
    if isinstance(spec, tf.estimator.EstimatorSpec):
      spec = spec._replace(
        scaffold=tf2_scaffold(spec.scaffold, spec_options, config)
      )
      if getattr(spec.scaffold.saver, "async_save", False):
        spec = async_spec.with_async_hook(spec, config)
      return spec
    if isinstance(spec, model_fn_lib._TPUEstimatorSpec):  # pylint: disable=protected-access
      # TPUEstimator runs its own saver hook, which saves synchronously.
      spec_options.pop("async_save", None)
      return spec._replace(
        scaffold_fn=_tf2_scaffold_fn(spec.scaffold_fn, spec_options, config)
      )
    raise errors.ArgumentTypeError(
      f"estimator_ckpt.tf2_checkpoints supports model_fns returning "
      f"tf.estimator.EstimatorSpec or TPUEstimatorSpec; {model_fn} "
      f"returned {type(spec)}."
    )

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


def tf2_scaffold(
  user_scaffold: Optional["tf.compat.v1.train.Scaffold"],
  options: Mapping[str, Any],
  config: Optional[tf.estimator.RunConfig],
) -> "tf.compat.v1.train.Scaffold":
  """The Scaffold a wrapped model_fn returns instead of `user_scaffold`.

  Every field of `user_scaffold` is kept. Its saver is honoured: a TF1
  `Saver` becomes a `Tf2Saver` of the same var_list and retention
  (`user_saver`), a saver that already writes object-based checkpoints is
  kept. Options win over the saver's, which win over RunConfig's retention
  (as in stock Estimator, whose CheckpointSaverHook uses the Scaffold's
  saver when there is one).

  Args:
    user_scaffold: The Scaffold the model_fn returned, or None.
    options: Keyword arguments of `scaffold.scaffold()`.
    config: The RunConfig Estimator passed, or None.
  """
  saver = None if user_scaffold is None else user_scaffold.saver
  if user_saver.writes_tf2(saver):
    return user_scaffold
  saver_options = dict(options)
  for option, value in user_saver.saver_options(saver).items():
    saver_options.setdefault(option, value)
  for option, field in _RUN_CONFIG_DEFAULTS.items():
    if option not in saver_options and config is not None:
      saver_options[option] = getattr(config, field)
  return scaffold.scaffold(copy_from_scaffold=user_scaffold, **saver_options)


def _tf2_scaffold_fn(
  scaffold_fn: Optional[Callable[[], "tf.compat.v1.train.Scaffold"]],
  options: Mapping[str, Any],
  config: Optional[tf.estimator.RunConfig],
) -> Callable[[], "tf.compat.v1.train.Scaffold"]:
  """A TPUEstimatorSpec's `scaffold_fn`, returning the TF2 Scaffold.

  TPUEstimator calls `scaffold_fn` on the host once the model is built
  (tpu_estimator.py `_get_scaffold`, or `as_estimator_spec` on CPU); the
  user's runs first, so every field it sets is kept (`tf2_scaffold`).
  """

  def tf2_scaffold_fn() -> "tf.compat.v1.train.Scaffold":
    user_scaffold = scaffold_fn() if scaffold_fn is not None else None
    return tf2_scaffold(user_scaffold, options, config)

  return tf2_scaffold_fn


def tf2_checkpoints(model_fn: Optional[ModelFn] = None, **options) -> Any:
  """Makes a model_fn save TF2 object-based checkpoints.

  Use as `@tf2_checkpoints` or `@tf2_checkpoints(also_write_tf1=True)`, or
  call `tf2_checkpoints(model_fn)`. The model_fn may have any Estimator
  signature (`labels`, `mode`, `params`, `config` optional) and may return
  an `EstimatorSpec` or a `TPUEstimatorSpec` (its `scaffold_fn` is wrapped).
  The returned model_fn keeps every field of its spec and of a Scaffold it
  set (init_fn, ready_op, ...). A saver the Scaffold sets is honoured, in
  every mode: a `tf.compat.v1.train.Saver` becomes a TF2 saver of the same
  var_list (e.g. `Saver(ema.variables_to_restore())` still restores the
  moving averages into the weights for evaluation, prediction and export)
  and retention; a `tf.train.Checkpoint` or `Tf2Saver` is kept as it is.

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
    **options: Keyword arguments of `estimator_ckpt.scaffold()`.
      `var_list`, `max_to_keep` and `keep_checkpoint_every_n_hours` default
      to those of the model_fn's own saver, if it sets one, else (retention)
      to the `RunConfig`'s `keep_checkpoint_max` and
      `keep_checkpoint_every_n_hours`. With `async_save=True`, training mode
      also gets an `estimator_ckpt.AsyncCheckpointSaverHook` on the
      RunConfig's schedule (`save_checkpoints_steps`/`_secs`), so saves do
      not block training; a `CheckpointSaverHook` passed to
      `train(hooks=...)` cannot be seen from a model_fn, so do not combine
      one with `async_save`. A saver the model_fn sets that already writes
      object-based checkpoints (`Tf2Saver`, `tf.train.Checkpoint`) is kept
      as it is, and these options do not apply to it.

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

  The result is an Estimator of the argument's own class (a shallow copy,
  see `estimator_class`): same model_dir, config, params, warm start and
  every attribute, the same methods (`KMeans.cluster_centers()`, a TF1
  canned class's `export_savedmodel`, a subclass's own), and its model_fn
  wrapped by `tf2_checkpoints`. For a `TPUEstimator` the user's model_fn is
  wrapped inside TPUEstimator's own (`params["batch_size"]`, the TPU config
  and export settings kept). The argument itself is unchanged. If model_dir
  holds TF1 checkpoints, training resumes from them by name and the next
  save is TF2.

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
    A new Estimator of `type(estimator)`.

  Raises:
    errors.FileSystemNotSupportedError: model_dir has a URL scheme no file
      system is registered for.
  """
  # FileSystemNotSupportedError now for a scheme no file system is
  # registered for, not TensorFlow's UnimplementedError once training writes.
  registry.for_path(estimator.model_dir)
  migrated = estimator_class.copy_with_model_fn(
    estimator, lambda model_fn: tf2_checkpoints(model_fn, **options)
  )
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
  # The class's, not those a previous migration set on the instance.
  stock_names = type(estimator).get_variable_names.__get__(estimator)
  stock_value = type(estimator).get_variable_value.__get__(estimator)

  def readable() -> bool:
    model_dir = estimator.model_dir
    return (
      # `gs://bucket/dir`, `hdfs://...`: file systems only TensorFlow reads.
      not registry.scheme(model_dir)
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
