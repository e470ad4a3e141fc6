"""Where a snapshot of `async_save` is written, and by whom.

In a process that holds the snapshot (a local session with only CPUs) the
snapshot is laid out here (`snapshot_bundle`): written onto a local disk,
or handed to the uploader process for an object store (`storage.uploader`,
where it serves). Elsewhere (a cluster: each ps writes its own shards), and
for a snapshot with variable-length tensors, the sharded `SaveV2` of a TF1
`Saver` of the snapshot writes it. Where it is laid out here, the run taking
the snapshot hands it over too (`SnapshotWriter.take`).
"""

from typing import List, Mapping, Optional

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.training import saver as saver_lib

from estimator_ckpt._src import snapshot_bundle
from estimator_ckpt._src.storage import registry
from estimator_ckpt._src.storage import uploader


class SnapshotWriter:
  """Writes a snapshot under one saver's keys (`async_save.Snapshot.writer`).

  In a process that holds the snapshot (a local session with only CPUs),
  `snapshot_bundle.write` writes it onto a local disk, and
  `snapshot_bundle.upload` onto an object store through the uploader
  process (`storage.uploader`, where it serves); elsewhere, and for a
  snapshot with variable-length tensors, the sharded `SaveV2` of `saver`
  (on a cluster each ps writes its own shards).

  Attributes:
    saver: A sharded TF1 `Saver` of the snapshot.
    tensors: The same tensors, for `snapshot_bundle.write`.
  """

  def __init__(
    self,
    hand_over: snapshot_bundle.ArrayHandOver,
    take: tf.Operation,
    saver: saver_lib.Saver,
    tensors: List[snapshot_bundle.BundleTensor],
  ):
    """A writer.

    Args:
      hand_over: The snapshot's `ArrayHandOver`.
      take: The op taking the snapshot.
      saver: A sharded TF1 `Saver` of the snapshot.
      tensors: The same tensors, for `snapshot_bundle.write`.
    """
    self._hand_over = hand_over
    self._take = take
    self.saver = saver
    self.tensors = tensors

  def write(
    self,
    sess,
    prefix: str,
    options: Optional[config_pb2.RunOptions],
    aliases: Mapping[bytes, bytes] = snapshot_bundle.NO_ALIASES,
  ) -> bool:
    """Writes checkpoint `prefix`; `options` set when run in this thread.

    Returns:
      Whether the index holds `aliases` (alias key -> saved key): this
      process wrote it. Otherwise (`SaveV2`) the caller adds them.
    """
    if self._in_process(sess, options):
      if _on_local_disk(prefix):
        snapshot_bundle.write(
          sess, self._hand_over, self.tensors, prefix, options, aliases
        )
        return True
      worker = _started_uploader(prefix)
      if worker is not None:
        snapshot_bundle.upload(
          sess, self._hand_over, self.tensors, prefix, worker, options, aliases
        )
        return True
    saver_def = self.saver.saver_def
    sess.run(
      saver_def.save_tensor_name,
      {saver_def.filename_tensor_name: prefix},
      options=options,
    )
    return not aliases

  def uploader_for(
    self, sess, prefix: str, options: Optional[config_pb2.RunOptions]
  ) -> Optional[uploader.Uploader]:
    """The uploader process that writes `prefix`, started; None if none."""
    if not self._in_process(sess, options) or _on_local_disk(prefix):
      return None
    return _started_uploader(prefix)

  def take(
    self, sess, prefix: str, options: Optional[config_pb2.RunOptions]
  ) -> None:
    """Takes the snapshot, handed over at once where `write` lays it out.

    Then the background save starts with no `session.run` (it would run
    at training's priority, in training's next step), and `write` finds
    the arrays kept, until the save ends (`AsyncParts.write_and_commit`).
    """
    take_and_hand_over = self._hand_over.take_and_hand_over
    if (
      take_and_hand_over is not None
      and self._in_process(sess, options)
      and (_on_local_disk(prefix) or uploader.serves(prefix))
    ):
      sess.run(take_and_hand_over)
    else:
      sess.run(self._take)

  def _in_process(self, sess, options: Optional[config_pb2.RunOptions]) -> bool:
    """Whether this process lays the snapshot out (no SaveV2)."""
    return options is not None and self._hand_over.writable and _cpu_only(sess)


def _started_uploader(prefix: str) -> Optional[uploader.Uploader]:
  """The shared uploader, started, if it serves `prefix`; else None."""
  if not uploader.serves(prefix):
    return None
  worker = uploader.shared()
  return worker if worker.start() else None


def _cpu_only(sess) -> bool:
  """Whether the session has only CPUs: variables placed nowhere stay there.

  With a GPU, a variable without a device (and its snapshot) is placed on
  it, and handing the snapshot to Python would copy it to the host.
  """
  return all(device.device_type == "CPU" for device in sess.list_devices())


def _on_local_disk(path: str) -> bool:
  capabilities = registry.for_path(path).capabilities
  return capabilities.os_paths and capabilities.durable_fsync
