"""The Scaffold factory: TF2 object-based checkpoints from any Estimator model.

`scaffold()` returns a `tf.compat.v1.train.Scaffold` whose saver is a
`tf2_saver.Tf2Saver`: it writes TF2 checkpoints in the layout of the
TensorFlow guide "Migrating model checkpoints" (`saver_keys`), with TF1
names as index aliases, and restores TF1 and TF2 checkpoints of any layout
(`saver_restore`). See `tf2_saver` for why a TF1 `Saver` and not a
`tf.train.Checkpoint`.
"""

from typing import Optional

import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src import saver_keys
from estimator_ckpt._src import tf2_saver

tf1 = tf.compat.v1

# Where they were defined before the saver had a module of its own.
Tf2Saver = tf2_saver.Tf2Saver
TF1_SUBDIR = tf2_saver.TF1_SUBDIR
VarList = saver_keys.VarList


def scaffold(
  *,
  var_list: Optional[saver_keys.VarList] = None,
  step: Optional[tf.Variable] = None,
  max_to_keep: int = 5,
  keep_checkpoint_every_n_hours: float = 10000.0,
  restore_name_based: bool = True,
  also_write_tf1: bool = False,
  tf1_names: bool = True,
  async_save: bool = False,
  **scaffold_kwargs,
) -> "tf.compat.v1.train.Scaffold":
  """A Scaffold whose saver writes TF2 object-based checkpoints.

  Call it inside `model_fn` and pass it as `EstimatorSpec(scaffold=...)`, or
  pass it to `MonitoredTrainingSession(scaffold=...)`. The saver is built when
  the Scaffold is finalized, so variables created after this call (optimizer
  slots) are included.

  Args:
    var_list: What to checkpoint. None (default): what a TF1 `Saver()` saves,
      i.e. every global variable, optimizer slots included, and saveable
      objects. A dict `{TF1 name: variable or partitions}` or a list of
      variables narrows it.
    step: The step variable, saved under `step/`. Default: the global step,
      if the graph has one.
    max_to_keep: Checkpoints to keep (Estimator users: see `tf2_checkpoints`,
      which takes RunConfig's `keep_checkpoint_max`).
    keep_checkpoint_every_n_hours: Additionally keep one checkpoint per this
      many hours.
    restore_name_based: Also restore TF1 name-based checkpoints (by name), so
      an existing model_dir resumes in place.
    also_write_tf1: Write a name-based copy of every save under
      `<model_dir>/tf1/`, for pipelines that need a directory of TF1
      checkpoints of their own. It writes every tensor a second time; with
      `tf1_names` a TF1 reader already finds every variable by name in the
      TF2 checkpoint itself.
    tf1_names: Also store every variable under its TF1 name, as an index
      alias of the same bytes (no tensor is written twice; the index grows
      by one entry per variable and slice), so TF1 readers (`Saver.restore`,
      `tf.train.load_variable`, stock warm start) read the TF2 checkpoint by
      name. TF2 readers see only the object graph, the same either way.
    async_save: Save in the background: a save blocks training only for one
      `session.run` that snapshots every saved tensor on its device; the
      checkpoint is written and committed (durably, on a local file system)
      behind training, with the same contents and commit order. Saves go
      through `estimator_ckpt.AsyncCheckpointSaverHook` (`tf2_checkpoints`
      and `migrate_estimator` install it); other hooks save synchronously.
      See docs/async_saves.md.
    **scaffold_kwargs: Passed to `tf.compat.v1.train.Scaffold` (init_op,
      init_fn, ready_op, local_init_op, summary_op, copy_from_scaffold, ...).
      `saver` is not accepted: this function provides it.

  Returns:
    A `tf.compat.v1.train.Scaffold` whose `saver` is a `Tf2Saver`.

  Raises:
    TypeError: `saver` was passed.
  """
  if "saver" in scaffold_kwargs:
    raise errors.ArgumentTypeError(
      "estimator_ckpt.scaffold() provides the saver; do not pass `saver`. "
      "Use `var_list` to choose what it saves."
    )
  saver = tf2_saver.Tf2Saver(
    var_list=var_list,
    step=step,
    max_to_keep=max_to_keep,
    keep_checkpoint_every_n_hours=keep_checkpoint_every_n_hours,
    restore_name_based=restore_name_based,
    also_write_tf1=also_write_tf1,
    tf1_names=tf1_names,
    async_save=async_save,
  )
  return tf1.train.Scaffold(saver=saver, **scaffold_kwargs)
