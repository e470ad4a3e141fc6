"""Durable commits of saved checkpoints: fsync before the state file names them.

TensorFlow's `SaveV2`/`MergeV2Checkpoints` and its `checkpoint` state-file
writer never fsync (tensorflow/core/util/tensor_bundle, `file_io.
atomic_write_string_to_file`): after a power loss the state file can name a
checkpoint whose data never reached the disk. Where the storage declares
durable fsync (`Capabilities.durable_fsync`: the local file system), a commit
fsyncs the checkpoint's files and its directory before the state file is
written, and the state file and directory after, before retention deletes
anything the previous state named. Elsewhere (object stores) each object is
durable once its write returns; the order of the writes is the commit.

The file-system calls go through the storage seam (`storage.registry`).
"""

import os
from typing import Optional

from tensorflow.python.checkpoint import checkpoint_management
from tensorflow.python.training import saver as saver_lib

from estimator_ckpt._src.storage import registry


def fsync_checkpoint(prefix: str) -> None:
  """Makes every file of checkpoint `prefix` and its directory durable.

  The files are `prefix.index`, `prefix.data-*` and `prefix.meta` (any
  `prefix.*`); nothing where the storage has no durable fsync.
  """
  store = registry.for_path(prefix)
  if not store.capabilities.durable_fsync:
    return
  directory, base = store.split(prefix)
  for name in sorted(store.listdir(directory, strict=True)):
    if name.startswith(base + "."):
      store.fsync_file(store.join(directory, name))
  store.fsync_dir(directory)


def fsync_state(save_dir: str, latest_filename: str) -> None:
  """Makes the `checkpoint` state file in `save_dir` and its entry durable."""
  store = registry.for_path(save_dir)
  if not store.capabilities.durable_fsync:
    return
  store.fsync_file(store.join(save_dir, latest_filename))
  store.fsync_dir(save_dir)


def commit_state(
  saver: saver_lib.Saver,
  path: str,
  latest_filename: Optional[str],
  meta_graph_suffix: str,
  durable_commit: bool,
) -> None:
  """Names a written checkpoint in the state file, then applies retention.

  What `Saver.save` does with write_state=True (relative paths); with
  `durable_commit` the checkpoint's files and directory are fsynced before
  and the state file after, where the storage makes fsync durable.
  """
  save_dir = os.path.dirname(path)
  latest = latest_filename or "checkpoint"
  if durable_commit:
    fsync_checkpoint(path)
  saver._RecordLastCheckpoint(path)  # pylint: disable=protected-access
  checkpoint_management.update_checkpoint_state_internal(
    save_dir=save_dir,
    model_checkpoint_path=path,
    all_model_checkpoint_paths=saver.last_checkpoints,
    latest_filename=latest,
    save_relative_paths=True,
  )
  if durable_commit:
    fsync_state(save_dir, latest)
  saver._MaybeDeleteOldCheckpoints(meta_graph_suffix=meta_graph_suffix)  # pylint: disable=protected-access
