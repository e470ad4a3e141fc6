"""Asynchronous saves for `Tf2Saver`: snapshot on the devices, commit behind.

With `scaffold(async_save=True)` a save blocks training only for one
`session.run` that assigns every saved tensor into a snapshot variable on the
same device (`Snapshot`). Resource variables copy on write, so the assign
takes a reference and the next update of a variable pays its copy. A
background thread then runs save ops that read the snapshot variables
(sharded by device as the synchronous save is: on a parameter-server cluster
each ps task writes its own shards, no tensor travels to the chief), writes
the meta graph, and commits exactly as a synchronous save does
(`Tf2Saver._commit`: index aliases, fsync where the storage makes it durable,
the `checkpoint` state file, retention), then the `also_write_tf1` copy from
the same snapshot.

On a local disk the background thread writes the snapshot itself, O_DIRECT
(`snapshot_bundle`), rather than through `SaveV2` and the page cache: the
same files, a fraction of the CPU, durable as written. Onto an object store
(`s3://`, `gs://`) it hands the same files to the uploader process
(`storage.uploader`), which uploads them below training's priority: in
this process the store client's own threads would upload at normal
priority.

The background runs execute their ops in the background thread itself
(`RunOptions(inter_op_thread_pool=-1)`) where TensorFlow allows it: in the
session's inter-op pool a save holds a thread for its whole write (on S3 the
upload runs inside the op), and the training step queues behind it.

At most one save is in flight (`async_committer.Committer`): a save
requested while one is in flight waits for it, so memory is at most the
model plus one snapshot, and the snapshot variables are released
(destroyed) once written. A failure is raised in the caller's thread at the
next save or at `wait_until_finished()`, naming the checkpoint; the state
file was not updated, so the previous checkpoint stays named and whole.

The snapshot and the save ops are built with the saver, before the graph is
finalized; nothing is added to the graph at save time.
"""

import numbers
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.checkpoint import checkpoint_management
from tensorflow.python.framework import ops
from tensorflow.python.ops import control_flow_ops
from tensorflow.python.ops import gen_resource_variable_ops
from tensorflow.python.training import saver as saver_lib
from tensorflow.python.training.saving import saveable_object
from tensorflow.python.training.saving import saveable_object_util

from estimator_ckpt._src import async_committer
from estimator_ckpt._src import durable
from estimator_ckpt._src import snapshot_bundle
from estimator_ckpt._src import snapshot_writer
from estimator_ckpt._src.storage import registry

tf1 = tf.compat.v1


class _SnapshotSaveable(saveable_object.SaveableObject):
  """Saves snapshot tensors under the original keys; restores nothing."""

  def __init__(self, specs: List[saveable_object.SaveSpec], name: str):
    super().__init__(specs[0].tensor, specs, name)

  def restore(self, restored_tensors, restored_shapes):
    del restored_tensors, restored_shapes  # Save-only.
    return control_flow_ops.no_op()


class _Entry:
  """One saved tensor: where it is saved and how its snapshot is read."""

  def __init__(
    self,
    index: int,
    saveable: str,
    spec: saveable_object.SaveSpec,
    read,
    tensor: snapshot_bundle.BundleTensor,
  ):
    self.index = index  # Of its saveable (a partition is one saveable).
    self.saveable = saveable
    self.name = spec.name
    self.slice_spec = spec.slice_spec
    self.dtype = spec.dtype
    self.device = spec.device
    self.read = read  # Callable: the snapshot's value on its device.
    self.tensor = tensor  # How snapshot_bundle reads and writes it.


class Snapshot:
  """Snapshot variables for every tensor a saver writes, and their ops.

  Attributes:
    take: The op assigning every saved tensor into its snapshot variable.
    release: The op destroying the snapshot variables (frees their memory).
    on_local_cpu: Whether every snapshot variable is on this process's CPU
      (as requested): then one executor runs a save of the snapshot.
    hand_over: Hands the snapshot to this process for
      `snapshot_bundle.write` (its `take_and_hand_over` runs `take` too).
  """

  def __init__(self, saveables: Sequence[saveable_object.SaveableObject]):
    self._entries: List[_Entry] = []
    devices = []
    assigns = []
    handles = []
    with ops.name_scope("async_save_snapshot"):
      self.hand_over = snapshot_bundle.ArrayHandOver()
      for index, saveable in enumerate(saveables):
        for spec in saveable.specs:
          with ops.device(spec.device):
            tensor = spec.tensor
          if tensor is None:
            continue
          if tensor.op.type == "Const":
            # The object graph: the same at every save, nothing to copy.
            self._entries.append(
              _Entry(
                index,
                saveable.name,
                spec,
                lambda t=tensor: t,
                self.hand_over.constant(
                  spec.name, spec.slice_spec, tensor, spec.device
                ),
              )
            )
            continue
          with ops.device(spec.device):
            shared = ops.get_default_graph().unique_name("snapshot")
            handle = gen_resource_variable_ops.var_handle_op(
              dtype=spec.dtype,
              shape=tensor.shape if tensor.shape.is_fully_defined() else None,
              shared_name=shared,
              name=os.path.basename(shared),
            )
            assigns.append(
              gen_resource_variable_ops.assign_variable_op(
                handle, tensor, validate_shape=False
              )
            )
            handles.append(handle)
            devices.append(handle.device)

          def read(h=handle, dtype=spec.dtype, device=spec.device):
            with ops.device(device):
              return gen_resource_variable_ops.read_variable_op(h, dtype)

          self._entries.append(
            _Entry(
              index,
              saveable.name,
              spec,
              read,
              self.hand_over.variable(
                spec.name, spec.slice_spec, spec.dtype, read, spec.device
              ),
            )
          )
      self.take = control_flow_ops.group(*assigns, name="take")
      destroys = []
      for handle in handles:
        with ops.device(handle.device):
          destroys.append(
            gen_resource_variable_ops.destroy_resource_op(
              handle, ignore_lookup_error=True
            )
          )
      self.release = control_flow_ops.group(*destroys, name="release")
      self.on_local_cpu = _one_local_cpu(devices)
      self.hand_over.finish(in_process=self.on_local_cpu, take=self.take)

  def writer(
    self, rename: Optional[Dict[str, str]] = None, skip=()
  ) -> snapshot_writer.SnapshotWriter:
    """Writes the snapshot under the saver's keys.

    Args:
      rename: Saved name -> name to write it under (the TF1 copy); names not
        in it keep theirs.
      skip: Saveables (by name) not written.
    """
    rename = rename or {}
    entries = [e for e in self._entries if e.saveable not in skip]
    return snapshot_writer.SnapshotWriter(
      self.hand_over,
      self.take,
      self._saver(entries, rename),
      [e.tensor.renamed(rename.get(e.name, e.name)) for e in entries],
    )

  def _saver(
    self, entries: Sequence[_Entry], rename: Dict[str, str]
  ) -> saver_lib.Saver:
    """A sharded TF1 `Saver` writing `entries` of the snapshot."""
    by_saveable: Dict[int, List[saveable_object.SaveSpec]] = {}
    names: Dict[int, str] = {}
    for entry in entries:
      names[entry.index] = rename.get(entry.saveable, entry.saveable)
      by_saveable.setdefault(entry.index, []).append(
        saveable_object.SaveSpec(
          entry.read,
          entry.slice_spec,
          rename.get(entry.name, entry.name),
          dtype=entry.dtype,
          device=entry.device,
        )
      )
    # Keyed by index: the parts of a partitioned variable share one name.
    saveables = {
      f"{index:08d}": _SnapshotSaveable(specs, names[index])
      for index, specs in by_saveable.items()
    }
    return saver_lib.Saver(
      var_list=saveables,
      sharded=True,
      save_relative_paths=True,
      max_to_keep=None,
      name="async_save",
    )


def saveables_of(var_list: Any) -> List[saveable_object.SaveableObject]:
  """The saveables a Saver builds from `var_list` (its read ops included)."""
  return saveable_object_util.validate_and_slice_inputs(var_list)


class MetaGraphCache:
  """The serialized meta graph of a finalized graph, exported once.

  Stock `Saver.save` exports the meta graph at every save (tens of ms of
  Python per save on a large graph, which in a background thread competes
  with training for the GIL). The graph of a MonitoredSession is finalized,
  so the export is the same every time: it is redone only when the graph
  changed (its `version`) or the export options differ.
  """

  def __init__(self):
    self._key: Any = None
    self._data = b""

  def write(
    self, saver: saver_lib.Saver, graph, path: str, strip_default_attrs: bool
  ) -> None:
    key = (id(graph), graph.version, strip_default_attrs)
    if key != self._key:
      with graph.as_default():
        meta_graph = saver.export_meta_graph(
          None, strip_default_attrs=strip_default_attrs
        )
      self._data = meta_graph.SerializeToString()
      self._key = key
    registry.for_path(path).put(path, self._data)


class AsyncParts:
  """What a `Tf2Saver` built with async_save adds: snapshot, savers, thread.

  Attributes:
    committer: The one background save at a time.
    snapshot: The snapshot variables (None until built).
    writer: Writes the snapshot under the saver's keys.
    tf1_writer: Writes the snapshot under TF1 names (`also_write_tf1`).
  """

  def __init__(self):
    self.committer = async_committer.Committer()
    self.meta_graph = MetaGraphCache()
    self.tf1_meta_graph = MetaGraphCache()
    self.snapshot: Optional[Snapshot] = None
    self.writer: Optional[snapshot_writer.SnapshotWriter] = None
    self.tf1_writer: Optional[snapshot_writer.SnapshotWriter] = None
    self._uploader_started = False

  def build(
    self,
    var_list: Any,
    tf1_rename: Optional[Dict[str, str]] = None,
    tf1_skip: Sequence[str] = (),
  ) -> None:
    """Builds the snapshot and its savers (before the graph is finalized)."""
    self.snapshot = Snapshot(saveables_of(var_list))
    self.writer = self.snapshot.writer()
    if tf1_rename is not None:
      self.tf1_writer = self.snapshot.writer(rename=tf1_rename, skip=tf1_skip)

  def start_uploader(self, sess, prefix: str) -> None:
    """Starts the uploader process that will write `prefix`, if any.

    Once, in the caller's thread (the first save, before training's first
    step): its start, loading TensorFlow's libraries (about 0.1 s of CPU),
    is then not CPU work competing with training in the background.
    """
    if self._uploader_started or self.writer is None:
      return
    self._uploader_started = True
    self.writer.uploader_for(sess, prefix, self._run_options(sess))

  def take(self, sess, prefix: str) -> None:
    """Takes the snapshot of checkpoint `prefix` (one `session.run`).

    Where this process writes it, the snapshot is handed over in the same
    run and kept until the save ends (`write_and_commit`, or `drop`).
    """
    assert self.writer is not None
    self.writer.take(sess, prefix, self._run_options(sess))

  def drop(self) -> None:
    """Lets go of the snapshot `take` handed over, if any."""
    assert self.snapshot is not None
    self.snapshot.hand_over.drop()

  def write(
    self,
    sess,
    writer: snapshot_writer.SnapshotWriter,
    prefix: str,
    aliases: Mapping[bytes, bytes] = snapshot_bundle.NO_ALIASES,
  ) -> bool:
    """Writes the snapshot to checkpoint `prefix` with `writer`.

    Returns:
      Whether the index holds `aliases` (`SnapshotWriter.write`).
    """
    return writer.write(sess, prefix, self._run_options(sess), aliases)

  def _run_options(self, sess) -> Optional[config_pb2.RunOptions]:
    """Options running a background step in the calling thread, if possible.

    A step in the session's inter-op pool holds a pool thread per running
    op; a save holds one for its whole write, and on an object store for the
    whole upload (tensorflow-io uploads when the file closes, inside the
    op). A training step then waits for a free thread: measured 70 to 170 ms
    for the step after a save of 64 MiB to the S3 emulator, 2 to 7 ms when
    the save runs in the background thread instead. A local `Session` runs a
    step in the caller's thread with `inter_op_thread_pool=-1`
    (config.proto), when the step runs in one executor; with more (a GPU)
    it uses its pool (direct_session.cc, `RunInternal`), so it is asked
    only for a snapshot on the local CPU. A distributed session runs each
    device's part where the device is (on a cluster each ps writes its own
    shards in its own process) and keeps its pools.
    """
    assert self.snapshot is not None
    target = getattr(sess, "sess_str", None)  # b"" for a local Session.
    if target is None or target or not self.snapshot.on_local_cpu:
      return None
    return config_pb2.RunOptions(inter_op_thread_pool=-1)

  def write_and_commit(
    self,
    sess,
    saver: saver_lib.Saver,
    prefix: str,
    *,
    aliases: Mapping[bytes, bytes],
    tf1_saver: Optional[saver_lib.Saver],
    tf1_dir: str,
    latest_filename: Optional[str],
    meta_graph_suffix: str,
    write_meta_graph: bool,
    strip_default_attrs: bool,
    save_debug_info: bool,
  ) -> None:
    """The background part of a save: write, commit, TF1 copy, release.

    Args:
      sess: The training session.
      saver: The `Tf2Saver` (its meta graph, aliases, state, retention).
      prefix: The checkpoint to write.
      aliases: The saver's aliases (alias key -> saved key): in the index
        as it is written, or added to it after (`SaveV2`).
      tf1_saver: The saver of the `also_write_tf1` copy, or None.
      tf1_dir: Where the copy goes.
      latest_filename: As `Saver.save`.
      meta_graph_suffix: As `Saver.save`.
      write_meta_graph: As `Saver.save`.
      strip_default_attrs: As `Saver.save`.
      save_debug_info: As `Saver.save`.
    """
    assert self.writer is not None
    try:
      aliased = self.write(sess, self.writer, prefix, aliases)
      meta = meta_graph_file(prefix, meta_graph_suffix)
      if write_meta_graph and save_debug_info:
        with sess.graph.as_default():
          saver.export_meta_graph(
            meta,
            strip_default_attrs=strip_default_attrs,
            save_debug_info=save_debug_info,
          )
      elif write_meta_graph:
        self.meta_graph.write(saver, sess.graph, meta, strip_default_attrs)
      if not aliased:
        saver._add_aliases(prefix)  # pylint: disable=protected-access
      durable.commit_state(
        saver, prefix, latest_filename, meta_graph_suffix, True
      )
      if self.tf1_writer is not None and tf1_saver is not None:
        registry.for_path(tf1_dir).makedirs(tf1_dir)
        tf1_prefix = os.path.join(tf1_dir, os.path.basename(prefix))
        self.write(sess, self.tf1_writer, tf1_prefix)
        if write_meta_graph:
          self.tf1_meta_graph.write(
            tf1_saver,
            sess.graph,
            meta_graph_file(tf1_prefix, meta_graph_suffix),
            strip_default_attrs,
          )
        durable.commit_state(
          tf1_saver, tf1_prefix, None, meta_graph_suffix, True
        )
    finally:
      # Failed or not, the arrays `take` handed over are let go (before
      # the release, which then frees the snapshot's memory).
      self.drop()
    self.release(sess)

  def release(self, sess) -> None:
    """Frees the snapshot variables' memory until the next save."""
    assert self.snapshot is not None
    sess.run(self.snapshot.release, options=self._run_options(sess))


def _one_local_cpu(devices: Sequence[str]) -> bool:
  """Whether every device is this process's CPU 0 (or unspecified)."""
  for device in devices:
    spec = tf.DeviceSpec.from_string(device)
    if spec.job not in (None, "localhost") or spec.task not in (None, 0):
      return False
    device_type = (spec.device_type or "CPU").upper()
    if device_type != "CPU" or spec.device_index not in (None, 0):
      return False
  return True


def checkpoint_file(sess, save_path: str, global_step) -> str:
  """The prefix `Saver.save` writes for `global_step` (as stock)."""
  if global_step is None:
    return save_path
  if not isinstance(global_step, numbers.Integral):  # A tensor or variable.
    global_step = tf1.train.global_step(sess, global_step)
  return f"{save_path}-{int(global_step)}"


def meta_graph_file(prefix: str, suffix: str) -> str:
  return checkpoint_management.meta_graph_filename(
    prefix, meta_graph_suffix=suffix
  )
