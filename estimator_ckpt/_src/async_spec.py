"""The hook an `EstimatorSpec` gets to save in the background.

Not public API. `tf2_checkpoints(async_save=True)` and
`migrate_estimator(async_save=True)` add an `AsyncCheckpointSaverHook` on
the RunConfig's schedule to the spec's chief hooks, as Estimator would add
its own `CheckpointSaverHook`; on Estimator's multi-worker collective path
it follows the rules of the stock hook `MonitoredTrainingSession` adds
there (see `with_async_hook`).
"""

from typing import Any

import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src import async_hook
from estimator_ckpt._src import distributed_saveables

tf1 = tf.compat.v1


def with_async_hook(
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
  save_steps = config.save_checkpoints_steps
  save_secs = config.save_checkpoints_secs
  stock_saver_follows = _collective_cluster(config)
  under_coordinator = (
    stock_saver_follows and "master" not in config.cluster_spec.jobs
  )
  if under_coordinator:
    # Under a distribute coordinator (a collective strategy and a cluster
    # without a master job, estimator_training.init_run_config), Estimator's
    # MonitoredTrainingSession adds its stock saver hook only when summaries
    # are saved, and saves every 1000 steps instead of by seconds
    # (`_create_monitored_session_with_worker_context`). The same here: the
    # other workers save through that hook, and a save of on-read variables
    # is an all-reduce they must all run. (The model_fn runs in a replica
    # thread, which does not see the coordinator's worker context.)
    if not config.save_summary_steps:
      return spec
    if save_secs:
      save_steps, save_secs = 1000, None
  if not (save_steps or save_secs):
    return spec
  if under_coordinator:
    _refuse_tf1_copy_of_on_read_variables(spec.scaffold.saver, config)
  hook = async_hook.AsyncCheckpointSaverHook(
    config.model_dir,
    save_secs=save_secs,
    save_steps=save_steps,
    scaffold=spec.scaffold,
    save_graph_def=config.checkpoint_save_graph_def,
    stock_saver_follows=stock_saver_follows,
  )
  return spec._replace(
    training_chief_hooks=(hook,) + tuple(spec.training_chief_hooks)
  )


def _refuse_tf1_copy_of_on_read_variables(saver: Any, config: Any) -> None:
  """Refuses what would stop every worker at the first save.

  Saving an on-read variable under a multi-worker collective strategy is an
  all-reduce every worker must run as often as the others. The chief's
  async save runs it once (the snapshot; the TF1 copy is written from it),
  the other workers' synchronous saves twice (the TF2 save and its TF1
  copy), so with two workers or more each would wait for the others forever.
  """
  jobs = config.cluster_spec.jobs
  workers = sum(
    config.cluster_spec.num_tasks(job)
    for job in ("chief", "worker")
    if job in jobs
  )
  if not saver.also_write_tf1 or workers < 2:
    return
  on_read = sorted(
    v.name.split(":")[0]
    for v in tf1.global_variables()
    if distributed_saveables.is_on_read(v)
  )
  if on_read:
    named = ", ".join(on_read[:3])
    if len(on_read) > 3:
      named += f" and {len(on_read) - 3} more"
    raise errors.InvalidArgumentError(
      "async_save=True with also_write_tf1=True cannot save the on-read "
      f"variables {named} (batch normalization's moving statistics are "
      f"such) with MultiWorkerMirroredStrategy on {workers} workers: each "
      "save of them is an all-reduce every worker must run as often as the "
      "others, and the chief's background save reads them once where the "
      "other workers' saves read them twice. Drop also_write_tf1 (convert a "
      "checkpoint with `convert --to=tf1` when you need a TF1 copy) or "
      "async_save."
    )


def _collective_cluster(config: Any) -> bool:
  """Whether Estimator trains through `_train_with_estimator_spec_distributed`.

  There MonitoredTrainingSession adds a stock `CheckpointSaverHook` of its
  own, through the scaffold's saver, after the spec's chief hooks.
  """
  return bool(config.cluster_spec) and type(
    config.train_distribute
  ).__name__ in (
    "CollectiveAllReduceStrategy",
    "CollectiveAllReduceStrategyV1",
    "MultiWorkerMirroredStrategy",
  )
