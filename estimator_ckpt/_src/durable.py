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

Everything goes through the storage seam (`storage.registry`).
"""

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
