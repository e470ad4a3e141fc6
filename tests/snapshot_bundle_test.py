"""The asynchronous save's own writer: the checkpoint `SaveV2` writes.

`snapshot_bundle.write` (through `snapshot_writer.SnapshotWriter`) must write
what TensorFlow's sharded `Saver` writes for the same variables: the same
files, byte for byte, readable and restorable by TensorFlow and accepted by
`verify`. Real graphs
and sessions; `direct_copy.write_segments`, under it, byte-exact at every
block edge, with and without O_DIRECT.
"""

import contextlib
import errno
import fcntl
import mmap
import os
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.python.training.saving import saveable_object_util

import estimator_ckpt
from estimator_ckpt._src import async_save
from estimator_ckpt._src import snapshot_bundle
from estimator_ckpt._src import tf2_saver
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.storage import direct_copy

from tests import tool_fixtures
from tests import tool_tf_fixtures

tf1 = tf.compat.v1

_IN_THREAD = config_pb2.RunOptions(inter_op_thread_pool=-1)


def _variables():
  """Variables of every fixed-size type and edge: scalars, empties, sizes.

  The big one spans two of the writer's buffers and is no multiple of a
  disk block; one partitioned variable is uneven, another has one part (a
  slice that covers the whole tensor, stored as the tensor); one variable
  is placed on `/device:CPU:0` and the rest nowhere, so the sharded `Saver`
  writes two data files.
  """
  rng = np.random.default_rng(0)
  variables = [
    tf1.get_variable(name.replace("/", "_"), initializer=tensor)
    for name, tensor in tool_tf_fixtures.every_dtype_tensors().items()
    if tensor.dtype != tf.string  # Left to SaveV2 (a test below).
  ]
  variables.append(tf1.get_variable("scalar", initializer=np.float32(3.5)))
  variables.append(
    tf1.get_variable("empty", initializer=np.zeros([0, 4], np.float32))
  )
  rows = direct_copy._COPY_CHUNK // (4 * 7) + 3
  variables.append(
    tf1.get_variable("big", initializer=rng.random([rows, 7], dtype=np.float32))
  )
  uneven = tf1.get_variable(
    "uneven",
    shape=[10, 3],
    initializer=tf1.initializers.random_normal(seed=1),
    partitioner=tf1.fixed_size_partitioner(3),
  )
  whole = tf1.get_variable(
    "whole",
    shape=[4, 2],
    initializer=tf1.initializers.random_normal(seed=2),
    partitioner=tf1.fixed_size_partitioner(1),
  )
  with tf1.device("/device:CPU:0"):
    variables.append(
      tf1.get_variable("placed", initializer=np.arange(6, dtype=np.int64))
    )
  return variables + list(uneven) + list(whole)


def _saveables(var_list):
  """What a Saver of `var_list` saves, as the async saver builds it."""
  return async_save.saveables_of(saveable_object_util.op_list_to_dict(var_list))


def _tensors(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {
    key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
  }


class SnapshotBundleTest(parameterized.TestCase, tf.test.TestCase):
  def _save_both(self, variables, work, aliases=snapshot_bundle.NO_ALIASES):
    """Saves `variables` with the sharded Saver and with the writer.

    With `aliases`, the sharded Saver's checkpoint gets them as a
    synchronous save adds them (`tf2_saver.add_aliases`).
    """
    stock = tf1.train.Saver(variables, sharded=True)
    snapshot = async_save.Snapshot(_saveables(variables))
    writer = snapshot.writer()
    self.assertTrue(snapshot.hand_over.writable)
    for name in ("stock", "ours"):
      os.makedirs(os.path.join(work, name))
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      stock_prefix = stock.save(
        sess,
        os.path.join(work, "stock", "m"),
        write_meta_graph=False,
        write_state=False,
      )
      tf2_saver.add_aliases(stock_prefix, aliases)
      sess.run(snapshot.take)
      written = []
      real_write = snapshot_bundle.write

      def spy(*args, **kwargs):
        written.append(args[3])
        return real_write(*args, **kwargs)

      ours = os.path.join(work, "ours", "m")
      with mock.patch.object(snapshot_bundle, "write", spy):
        self.assertTrue(writer.write(sess, ours, _IN_THREAD, aliases))
      self.assertEqual(written, [ours])  # Not SaveV2.
      values = sess.run(variables)
    return stock_prefix, ours, values

  def test_writes_what_the_sharded_saver_writes(self):
    work = self.create_tempdir().full_path
    with tf.Graph().as_default():
      variables = _variables()
      stock, ours, values = self._save_both(variables, work)
    # The index and both data files, nothing staged left behind.
    self.assertEqual(
      sorted(os.listdir(os.path.dirname(stock))),
      sorted(os.listdir(os.path.dirname(ours))),
    )
    self.assertLen(bundle.read(ours).data_paths(), 2)
    # Byte for byte: the same layout (the saver's order, no padding), index.
    for name in os.listdir(os.path.dirname(stock)):
      with open(os.path.join(os.path.dirname(stock), name), "rb") as f:
        expected_bytes = f.read()
      with open(os.path.join(os.path.dirname(ours), name), "rb") as f:
        self.assertEqual(f.read(), expected_bytes, name)
    expected, actual = _tensors(stock), _tensors(ours)
    self.assertEqual(sorted(expected), sorted(actual))
    for key, value in expected.items():
      np.testing.assert_array_equal(value, actual[key], err_msg=key)
    estimator_ckpt.verify(ours, against=stock)
    # TensorFlow restores it into the variables.
    with tf.Graph().as_default():
      variables = _variables()
      with tf1.Session() as sess:
        tf1.train.Saver(variables).restore(sess, ours)
        for value, restored in zip(values, sess.run(variables)):
          np.testing.assert_array_equal(value, restored)

  def test_the_index_holds_the_aliases_a_synchronous_save_adds(self):
    # Written once, where a synchronous save rewrites its index: the same
    # bytes. A whole tensor, a partitioned one (its slices too), an int64.
    aliases = {
      b"tf1/big": b"big",
      b"tf1/uneven": b"uneven",
      b"tf1/placed": b"placed",
    }
    work = self.create_tempdir().full_path
    with tf.Graph().as_default():
      variables = _variables()
      stock, ours, _ = self._save_both(variables, work, aliases)
    with open(stock + ".index", "rb") as f:
      expected_bytes = f.read()
    with open(ours + ".index", "rb") as f:
      self.assertEqual(f.read(), expected_bytes)
    actual = _tensors(ours)
    for alias, target in aliases.items():
      np.testing.assert_array_equal(
        actual[alias.decode()], actual[target.decode()]
      )
    estimator_ckpt.verify(ours, against=stock)

  def test_a_failed_write_leaves_nothing_behind(self):
    work = self.create_tempdir().full_path
    real_write_segments = direct_copy.write_segments
    written = []

    def second_fails(dst, size, segments):
      if written:
        raise OSError(28, f"{dst}: No space left on device (injected)")
      real_write_segments(dst, size, segments)
      written.append(dst)

    with tf.Graph().as_default():
      variables = _variables()
      snapshot = async_save.Snapshot(_saveables(variables))
      writer = snapshot.writer()
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(snapshot.take)
        with mock.patch.object(direct_copy, "write_segments", second_fails):
          with self.assertRaisesRegex(OSError, "No space"):
            writer.write(sess, os.path.join(work, "m"), _IN_THREAD)
    self.assertLen(written, 1)  # The first data file was complete.
    self.assertEqual(os.listdir(work), [])

  def test_a_killed_saves_staging_is_cleared(self):
    work = self.create_tempdir().full_path
    staging = os.path.join(work, "m" + snapshot_bundle.STAGING_SUFFIX)
    os.mkdir(staging)
    for name in ("m.data-00000-of-00002", "part-00000-of-00001.index"):
      with open(os.path.join(staging, name), "wb") as f:
        f.write(b"left by a killed save")
    with tf.Graph().as_default():
      variable = tf1.get_variable("v", initializer=[1.0, 2.0])
      snapshot = async_save.Snapshot(_saveables([variable]))
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(snapshot.take)
        snapshot.writer().write(sess, os.path.join(work, "m"), _IN_THREAD)
    self.assertCountEqual(
      os.listdir(work), ["m.index", "m.data-00000-of-00001"]
    )
    np.testing.assert_array_equal(
      _tensors(os.path.join(work, "m"))["v"], [1, 2]
    )

  def test_string_variables_are_written_by_savev2(self):
    work = self.create_tempdir().full_path
    with tf.Graph().as_default():
      table = tf.lookup.experimental.MutableHashTable(
        key_dtype=tf.string, value_dtype=tf.int64, default_value=-1
      )
      insert = table.insert(
        tf.constant(["a", "bb"]), tf.constant([1, 2], tf.int64)
      )
      snapshot = async_save.Snapshot(_saveables([table]))
      writer = snapshot.writer()
      self.assertFalse(snapshot.hand_over.writable)
      prefix = os.path.join(work, "m")
      with tf1.Session() as sess:
        sess.run(insert)
        sess.run(snapshot.take)
        with mock.patch.object(snapshot_bundle, "write") as native:
          writer.write(sess, prefix, _IN_THREAD)
        native.assert_not_called()
    keys = sorted(_tensors(prefix).items())
    self.assertLen(keys, 2)
    self.assertEqual(sorted(keys[0][1].tolist()), [b"a", b"bb"])

  def test_a_session_with_a_gpu_is_left_to_savev2(self):
    # Variables placed nowhere go to the GPU with their snapshots; handing
    # those to Python would copy the model to the host.
    work = self.create_tempdir().full_path
    with tf.Graph().as_default():
      variable = tf1.get_variable("v", initializer=[1.0, 2.0])
      snapshot = async_save.Snapshot(_saveables([variable]))
      writer = snapshot.writer()
      self.assertTrue(snapshot.hand_over.writable)
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(snapshot.take)
        devices = sess.list_devices() + [
          mock.Mock(device_type="GPU", name="/device:GPU:0")
        ]
        with (
          mock.patch.object(sess, "list_devices", return_value=devices),
          mock.patch.object(snapshot_bundle, "write") as native,
        ):
          writer.write(sess, os.path.join(work, "m"), _IN_THREAD)
        native.assert_not_called()
    np.testing.assert_array_equal(
      _tensors(os.path.join(work, "m"))["v"], [1, 2]
    )

  def test_a_cluster_snapshot_is_left_to_savev2(self):
    with tf.Graph().as_default():
      with tf1.device("/job:ps/task:0"):
        variable = tf1.get_variable("v", initializer=[1.0])
      snapshot = async_save.Snapshot(_saveables([variable]))
    self.assertFalse(snapshot.on_local_cpu)
    self.assertFalse(snapshot.hand_over.writable)  # No op pulls it to here.


def _segments(rng, block):
  """Segments around every edge, with their file size and expected bytes.

  At and off block boundaries, from memory at and off page boundaries,
  across the writer's buffers, with gaps between (zeros).
  """
  segments, offset = [], 0
  for size, misaligned, gap in (
    (3 * block + 5, False, 0),  # Starts at 0, ends mid-block.
    (1, True, 0),  # Shares that block.
    (block, True, 7),
    (2 * direct_copy._COPY_CHUNK + 11, True, 100),  # Several buffers.
    (block - 1, False, block),  # After a whole block of zeros.
    (5 * block, False, 0),
    (3 * block, True, block - 3),
    (17, True, 2),  # Ends in a partial last block.
  ):
    offset += gap
    memory = np.frombuffer(mmap.mmap(-1, size + block), np.uint8)
    view = memory[int(misaligned) : int(misaligned) + size]
    view[:] = np.frombuffer(rng.bytes(size), np.uint8)
    segments.append((offset, view))
    offset += size
  expected = bytearray(offset)
  for at, view in segments:
    expected[at : at + len(view)] = view.tobytes()
  return segments, offset, bytes(expected)


class WriteSegmentsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("o_direct", None, None),
    ("o_direct_refused_at_open", tool_fixtures.refusing_o_direct, "open"),
    (
      "o_direct_writes_refused",
      tool_fixtures.refusing_o_direct_writes,
      "pwrite",
    ),
  )
  def test_byte_exact_around_block_edges(self, refusal, function):
    work = self.create_tempdir().full_path
    block = direct_copy._DIRECT_ALIGNMENT
    segments, size, expected = _segments(np.random.default_rng(0), block)
    cases = {
      "file": (segments, size, expected),
      "tiny": ([(1, b"ab")], 5, b"\0ab\0\0"),
      "empty": ([], 0, b""),
      "shuffled": (
        segments[::-1],
        size + block + 3,
        expected + bytes(block + 3),
      ),
    }
    direct_writes = []
    for name, (pieces, length, content) in cases.items():
      dst = os.path.join(work, name)
      with contextlib.ExitStack() as stack:
        if refusal:
          stack.enter_context(
            mock.patch.object(os, function, refusal(getattr(os, function)))
          )
        pwrite = os.pwrite

        def spy(fd, data, offset, pwrite=pwrite):
          written = pwrite(fd, data, offset)  # Only writes that took.
          direct_writes.append(
            bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
          )
          return written

        stack.enter_context(mock.patch.object(os, "pwrite", spy))
        direct_copy.write_segments(dst, length, pieces)
      with open(dst, "rb") as f:
        self.assertEqual(f.read(), content, f"{function}, {name}")
    self.assertLen(os.listdir(work), len(cases))
    # O_DIRECT where the file system takes it (the test's temp dir does).
    self.assertEqual(any(direct_writes), refusal is None)

  @parameterized.parameters(1, 3 * 4096)
  def test_an_existing_file_is_refused_and_kept(self, size):
    dst = os.path.join(self.create_tempdir().full_path, "dst")
    with open(dst, "wb") as f:
      f.write(b"kept")
    for refusal in (None, tool_fixtures.refusing_o_direct):
      with contextlib.ExitStack() as stack:
        if refusal:
          stack.enter_context(mock.patch.object(os, "open", refusal(os.open)))
        with self.assertRaises(FileExistsError):
          direct_copy.write_segments(dst, size, [(0, bytes(size))])
      with open(dst, "rb") as f:
        self.assertEqual(f.read(), b"kept")

  def test_overlapping_segments_are_refused(self):
    dst = os.path.join(self.create_tempdir().full_path, "dst")
    with self.assertRaisesRegex(ValueError, "overlaps"):
      direct_copy.write_segments(dst, 8, [(0, b"abcd"), (3, b"xy")])
    with self.assertRaisesRegex(ValueError, "passes the file's 8 bytes"):
      direct_copy.write_segments(dst, 8, [(6, b"xyz")])
    self.assertFalse(os.path.exists(dst))

  def test_a_failed_write_leaves_no_file(self):
    work = self.create_tempdir().full_path
    dst = os.path.join(work, "dst")
    segments, size, _ = _segments(np.random.default_rng(0), 4096)
    real_pwrite = os.pwrite
    calls = []

    def pwrite_fills_up(fd, data, offset):
      calls.append(offset)
      if len(calls) == 2:  # A writer's, with or without O_DIRECT.
        raise OSError(errno.ENOSPC, "No space left on device (injected)")
      return real_pwrite(fd, data, offset)

    with mock.patch.object(os, "pwrite", pwrite_fills_up):
      with self.assertRaisesRegex(OSError, "No space"):
        direct_copy.write_segments(dst, size, segments)
    self.assertEqual(os.listdir(work), [])


if __name__ == "__main__":
  absltest.main()
