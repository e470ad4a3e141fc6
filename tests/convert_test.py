"""convert(): layouts, bit-exact round trips, restores by real TF APIs."""

import contextlib
import errno
import os
import threading
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt._src import conversion_plan
from estimator_ckpt._src import progress
from estimator_ckpt._src.cli import render
from estimator_ckpt._src.storage import direct_copy
from estimator_ckpt._src.storage import local
from estimator_ckpt._src.storage import transfer

from examples.guide import converter
from tests import tool_fixtures
from tests import tool_tf_fixtures

tf1 = tf.compat.v1


def _files(directory):
  return sorted(os.listdir(directory))


def _tf_values_by_name(path):
  """TensorFlow's view of a checkpoint, keys decoded to TF1 names."""
  prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
  values = tool_tf_fixtures.tensorflow_values(prefix)
  values.pop(keys.OBJECT_GRAPH_KEY, None)
  values.pop(keys.SAVE_COUNTER_KEY, None)  # The Checkpoint's, not a variable.
  out = {}
  for key, value in values.items():
    out[keys.variable_name(key) or key] = value
  return out


class ConversionTest(parameterized.TestCase, tf.test.TestCase):
  def _dst(self, name="dst"):
    return os.path.join(self.create_tempdir().full_path, name)

  @parameterized.parameters(*tool_fixtures.TF1_GOLDENS)
  def test_tf1_to_tf2_to_tf1_is_byte_identical(self, name):
    source = tool_fixtures.golden_path(name)
    before = tool_fixtures.tree_digest(os.path.dirname(source + "/"))
    tf2_prefix = estimator_ckpt.convert(source, self._dst("tf2"), to="tf2")
    tf1_prefix = estimator_ckpt.convert(tf2_prefix, self._dst("tf1"), to="tf1")
    source_prefix = (
      tf.train.latest_checkpoint(source) if os.path.isdir(source) else source
    )
    for suffix in (".index", ".data-00000-of-00001"):
      with (
        open(source_prefix + suffix, "rb") as a,
        open(tf1_prefix + suffix, "rb") as b,
      ):
        self.assertEqual(a.read(), b.read(), suffix)
    self.assertEqual(
      _tf_values_by_name(tf2_prefix).keys(),
      _tf_values_by_name(source_prefix).keys(),
    )
    for key, value in _tf_values_by_name(source_prefix).items():
      tool_tf_fixtures.assert_bit_equal(
        self, value, _tf_values_by_name(tf2_prefix)[key], key
      )
    # The source is only read.
    self.assertEqual(
      tool_fixtures.tree_digest(os.path.dirname(source + "/")), before
    )

  def test_tf2_layout_is_the_scaffold_factorys(self):
    prefix = estimator_ckpt.convert(
      tool_fixtures.golden_path("est-tf1-ranking"), self._dst(), to="tf2"
    )
    reader = tf.train.load_checkpoint(prefix)
    stored = set(reader.get_variable_to_shape_map())
    names = [
      n
      for n, _ in tf.train.list_variables(
        tool_fixtures.golden_path("est-tf1-ranking")
      )
    ]
    # TF2 keys, and the TF1 names as index aliases (tf1_names=True).
    expected = (
      {keys.variable_key(n) for n in names}
      | set(names)
      | {keys.OBJECT_GRAPH_KEY, keys.SAVE_COUNTER_KEY}
    )
    self.assertEqual(stored, expected)
    self.assertIn(keys.STEP_KEY, stored)
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
      reader.get_tensor(keys.OBJECT_GRAPH_KEY)
    )
    self.assertEqual(
      graph.SerializeToString(),
      keys.object_graph(
        [n for n in names if n != keys.GLOBAL_STEP_NAME], save_counter=True
      ).SerializeToString(),
    )
    # The alias keeps Estimator's max_steps and tf.train.load_variable working.
    model_dir = os.path.dirname(prefix)
    self.assertEqual(tf.train.load_variable(model_dir, "global_step"), 20)
    self.assertEqual(reader.get_tensor(keys.STEP_KEY), 20)
    with open(os.path.join(model_dir, "checkpoint")) as f:
      self.assertEqual(
        f.read(),
        'model_checkpoint_path: "model.ckpt-20"\n'
        'all_model_checkpoint_paths: "model.ckpt-20"\n',
      )

  def test_tf2_restores_with_tf_train_checkpoint(self):
    prefix = estimator_ckpt.convert(
      tool_fixtures.golden_path("est-tf1"), self._dst(), to="tf2"
    )
    with tf.Graph().as_default():
      step = tf1.train.get_or_create_global_step()
      var = tf1.get_variable("var", shape=[])
      ckpt = tf.train.Checkpoint(var_list={"var": var}, step=step)
      # restore() + assert_consumed(), as the guide "Reuse pre-existing TF1.x
      # checkpoints" validates: the layout has the save_counter node that
      # Checkpoint.save writes, holding the step.
      status = ckpt.restore(prefix)
      with tf1.Session() as sess:
        status.assert_consumed().run_restore_ops(sess)
        self.assertEqual(sess.run([var, step, ckpt.save_counter]), [2.0, 1, 1])
    with tf.Graph().as_default():
      var = tf1.get_variable("var", shape=[])
      ckpt = tf.train.Checkpoint(var_list={"var": var})
      # read() creates no save counter, so (as with stock Checkpoint.save
      # output) assert_consumed() would find one unresolved node; this is
      # the check for read().
      status = ckpt.read(prefix)
      with tf1.Session() as sess:
        status.assert_existing_objects_matched().run_restore_ops(sess)
        self.assertEqual(sess.run(var), 2.0)

  def test_tf2_partitioned_restores_with_a_saver_by_key(self):
    # A TF1 Saver restores partitioned variables from their slices under the
    # TF2 keys, as the Scaffold factory does.
    prefix = estimator_ckpt.convert(
      tool_fixtures.golden_path("est-tf1-ranking"), self._dst(), to="tf2"
    )
    source = tool_fixtures.golden_path("est-tf1-ranking")
    with tf.Graph().as_default():
      emb = tf1.get_variable(
        "user_embedding",
        shape=[200, 8],
        partitioner=tf1.fixed_size_partitioner(4),
      )
      slot = tf1.get_variable(
        "user_embedding/Adam",
        shape=[200, 8],
        partitioner=tf1.fixed_size_partitioner(4),
      )
      saver = tf1.train.Saver(
        {
          keys.variable_key("user_embedding"): list(emb),
          keys.variable_key("user_embedding/Adam"): list(slot),
        }
      )
      with tf1.Session() as sess:
        saver.restore(sess, prefix)
        values = sess.run([emb.as_tensor(), slot.as_tensor()])
    tool_tf_fixtures.assert_bit_equal(
      self, tf.train.load_variable(source, "user_embedding"), values[0]
    )
    tool_tf_fixtures.assert_bit_equal(
      self, tf.train.load_variable(source, "user_embedding/Adam"), values[1]
    )

  def test_every_dtype_round_trips(self):
    source = tool_tf_fixtures.save_v2(
      os.path.join(self.create_tempdir().full_path, "dtypes"),
      tool_tf_fixtures.every_dtype_tensors(),
    )
    tf2_prefix = estimator_ckpt.convert(source, self._dst("tf2"), to="tf2")
    tf1_prefix = estimator_ckpt.convert(tf2_prefix, self._dst("tf1"), to="tf1")
    expected = tool_tf_fixtures.tensorflow_values(source)
    for prefix in (tf2_prefix, tf1_prefix):
      actual = _tf_values_by_name(prefix)
      self.assertEqual(sorted(actual), sorted(expected))
      for key, value in expected.items():
        tool_tf_fixtures.assert_bit_equal(self, value, actual[key], key)

  @parameterized.named_parameters(
    ("ours", "est-tf2", {"var": 4.0, "global_step": 1}),
    (
      "generic_object_graph",
      "tf2-ckpt",
      # Not `save_counter`: Checkpoint's own counter is no model variable
      # (issue 11), so it is not converted.
      {"a": 5.0, "b": 6.0, "scoped/c": 7.0},
    ),
  )
  def test_tf2_to_tf1_restores_with_a_saver(self, golden, expected):
    prefix = estimator_ckpt.convert(
      tool_fixtures.golden_path(golden), self._dst(), to="tf1"
    )
    self.assertEqual(estimator_ckpt.checkpoint_format(prefix), "tf1")
    with tf.Graph().as_default():
      variables = {
        name: tf1.get_variable(
          name,
          shape=[],
          dtype=tf.int64 if isinstance(value, int) else tf.float32,
        )
        for name, value in expected.items()
      }
      saver = tf1.train.Saver(list(variables.values()))
      with tf1.Session() as sess:
        saver.restore(sess, prefix)
        self.assertEqual(sess.run(variables), expected)

  def test_scaffold_layout_to_tf1_and_back(self):
    source = tool_tf_fixtures.scaffold_layout_checkpoint(
      os.path.join(self.create_tempdir().full_path, "scaffold")
    )
    tf1_prefix = estimator_ckpt.convert(source, self._dst("tf1"), to="tf1")
    self.assertEqual(tf.train.load_variable(tf1_prefix, "global_step"), 42)
    self.assertEqual(tf.train.load_variable(tf1_prefix, "emb").shape, (6, 2))
    tf2_prefix = estimator_ckpt.convert(tf1_prefix, self._dst("tf2"), to="tf2")
    estimator_ckpt.verify(tf2_prefix, against=source)

  def test_guide_vars_layout_to_tf1(self):
    converted = converter.convert_tf1_to_tf2(
      tool_fixtures.golden_path("tf1-ckpt"),
      os.path.join(self.create_tempdir().full_path, "guide"),
    )
    prefix = estimator_ckpt.convert(converted, self._dst(), to="tf1")
    self.assertEqual(tf.train.load_variable(prefix, "scoped/c"), 3.0)

  def test_stock_tf2_partitions_to_tf1_slices(self):
    tf1_prefix, tf2_prefix, value = tool_tf_fixtures.partitioned_checkpoints(
      self.create_tempdir().full_path
    )
    prefix = estimator_ckpt.convert(tf2_prefix, self._dst(), to="tf1")

    # The same keys, slices and bytes as TF1's own Saver wrote for the same
    # variables (offsets differ: the data file is the TF2 one).
    def layout(p):
      out = {}
      for key, entry in tool_fixtures.entries(p).items():
        if key:
          entry.ClearField("offset")
        out[key] = entry
      return out

    self.assertEqual(layout(prefix), layout(tf1_prefix))
    with tf.Graph().as_default():
      emb = tf1.get_variable(
        "emb", shape=[10, 3], partitioner=tf1.fixed_size_partitioner(4)
      )
      with tf1.Session() as sess:
        tf1.train.Saver([emb]).restore(sess, prefix)
        tool_tf_fixtures.assert_bit_equal(
          self, value, sess.run(emb.as_tensor())
        )

  @parameterized.named_parameters(
    ("scope_dict", {"hidden/": "tower/hidden/"}),
    ("regex", [(r"^hidden/", "tower/hidden/")]),
  )
  def test_rename(self, spec):
    source = tool_fixtures.golden_path("est-tf1-ranking")
    prefix = estimator_ckpt.convert(source, self._dst(), to="tf1", rename=spec)
    renamed = dict(estimator_ckpt.list_variables(prefix))
    self.assertIn("tower/hidden/kernel/Adam", renamed)
    self.assertNotIn("hidden/kernel", renamed)
    tool_tf_fixtures.assert_bit_equal(
      self,
      tf.train.load_variable(source, "hidden/kernel"),
      tf.train.load_variable(prefix, "tower/hidden/kernel"),
    )

  def test_rename_partitioned_reencodes_slice_keys(self):
    source = tool_fixtures.golden_path("est-tf1-ranking")
    prefix = estimator_ckpt.convert(
      source, self._dst(), to="tf2", rename={"user_embedding": "users"}
    )
    with tf.Graph().as_default():
      emb = tf1.get_variable(
        "users", shape=[200, 8], partitioner=tf1.fixed_size_partitioner(4)
      )
      saver = tf1.train.Saver({keys.variable_key("users"): list(emb)})
      with tf1.Session() as sess:
        saver.restore(sess, prefix)
        tool_tf_fixtures.assert_bit_equal(
          self,
          tf.train.load_variable(source, "user_embedding"),
          sess.run(emb.as_tensor()),
        )

  def test_rename_collision_is_refused(self):
    with self.assertRaisesRegex(
      errors.InvalidArgumentError, "`a`, `b` -> `x`.*Fix the rename spec"
    ):
      estimator_ckpt.convert(
        tool_fixtures.golden_path("tf1-ckpt"),
        self._dst(),
        to="tf2",
        rename={"a": "x", "b": "x"},
      )
    with self.assertRaises(errors.InvalidRenameError):
      estimator_ckpt.convert(
        tool_fixtures.golden_path("tf1-ckpt"),
        self._dst(),
        to="tf2",
        rename={"a/": "x"},
      )

  def test_all_checkpoints(self):
    dst = self._dst()
    prefix = estimator_ckpt.convert(
      tool_fixtures.golden_path("est-tf2"), dst, to="tf1", all_checkpoints=True
    )
    self.assertEqual(prefix, os.path.join(dst, "model.ckpt-1"))
    state = tf.train.get_checkpoint_state(dst)
    self.assertEqual(
      list(state.all_model_checkpoint_paths),
      [os.path.join(dst, "model.ckpt-0"), os.path.join(dst, "model.ckpt-1")],
    )
    with open(os.path.join(dst, "checkpoint")) as f:
      self.assertNotIn(dst, f.read())  # Relative paths.
    self.assertEqual(
      tf.train.load_variable(os.path.join(dst, "model.ckpt-0"), "var"),
      tf.train.load_variable(
        os.path.join(tool_fixtures.golden_path("est-tf2"), "model.ckpt-0"),
        "var_list/var/.ATTRIBUTES/VARIABLE_VALUE",
      ),
    )

  def test_link_hard_links_data_files(self):
    source = tool_fixtures.copy_golden(
      "est-tf1-ranking", self.create_tempdir().full_path
    )
    prefix = estimator_ckpt.convert(source, self._dst(), to="tf2", link=True)
    source_data = os.path.join(source, "model.ckpt-20.data-00000-of-00001")
    self.assertTrue(
      os.path.samefile(source_data, prefix + ".data-00000-of-00002")
    )
    self.assertEqual(tf.train.load_variable(prefix, "global_step"), 20)

  def test_link_falls_back_to_copy(self):
    source = tool_fixtures.copy_golden(
      "est-tf1", self.create_tempdir().full_path
    )
    cross_device = OSError(errno.EXDEV, os.strerror(errno.EXDEV))
    with mock.patch.object(os, "link", side_effect=cross_device):
      prefix = estimator_ckpt.convert(source, self._dst(), to="tf2", link=True)
    self.assertFalse(
      os.path.samefile(
        os.path.join(source, "model.ckpt-1.data-00000-of-00001"),
        prefix + ".data-00000-of-00002",
      )
    )
    self.assertEqual(
      tf.train.load_variable(prefix, keys.variable_key("var")), 2.0
    )

  def test_copies_without_o_direct(self):
    with mock.patch.object(
      os, "open", tool_fixtures.refusing_o_direct(os.open)
    ):
      prefix = estimator_ckpt.convert(
        tool_fixtures.golden_path("est-tf1-ranking"), self._dst(), to="tf2"
      )
    estimator_ckpt.verify(
      prefix, against=tool_fixtures.golden_path("est-tf1-ranking")
    )

  @parameterized.named_parameters(
    ("o_direct", None),
    ("o_direct_refused_at_open", tool_fixtures.refusing_o_direct, "open"),
    (
      "o_direct_writes_refused",
      tool_fixtures.refusing_o_direct_writes,
      "pwrite",
    ),
  )
  def test_copy_file_is_byte_exact_around_block_and_buffer_edges(
    self, refusal, function=None
  ):
    work = self.create_tempdir().full_path
    chunk, block = direct_copy._COPY_CHUNK, direct_copy._DIRECT_ALIGNMENT
    sizes = [
      0,
      1,
      block - 1,
      block,
      block + 1,
      2 * chunk + 3 * block + 7,
      direct_copy._COPY_BUFFERS * chunk * 2,
    ]
    rng = np.random.default_rng(0)
    for size in sizes:
      src = os.path.join(work, f"src-{size}")
      data = rng.bytes(size)
      with open(src, "wb") as f:
        f.write(data)
      dst = os.path.join(work, f"dst-{size}")
      reported: list = []
      observers: list = []

      def new_observer(observers=observers):
        observers.append(bytearray())
        sink = observers[-1]
        return lambda offset, view: sink.extend(view)

      with contextlib.ExitStack() as stack:
        if refusal:
          stack.enter_context(
            mock.patch.object(os, function, refusal(getattr(os, function)))
          )
        transfer.copy_file(src, dst, reported.append, new_observer)
      with open(dst, "rb") as f:
        self.assertEqual(f.read(), data, f"{function}, {size} bytes")
      self.assertEqual(sum(reported), size)  # Each byte once, also on retry.
      self.assertEqual(observers[-1], data)  # The checker saw every byte.
    self.assertEqual(
      sorted(os.listdir(work)),
      sorted([f"src-{n}" for n in sizes] + [f"dst-{n}" for n in sizes]),
    )

  def test_interrupted_copy_never_writes_into_another_file(self):
    # Ctrl-C while the copy waits for its writers closes the output file
    # with writes still queued; they must not land in whichever file reuses
    # its descriptor number.
    work = self.create_tempdir().full_path
    src = os.path.join(work, "src")
    with open(src, "wb") as f:
      f.write(b"\xab" * (3 * direct_copy._COPY_CHUNK))
    release = threading.Event()
    real_pwrite = os.pwrite

    def gated_pwrite(fd, data, offset):
      release.wait()
      return real_pwrite(fd, data, offset)

    with mock.patch.object(os, "pwrite", gated_pwrite):
      with mock.patch.object(
        threading.Thread, "join", side_effect=KeyboardInterrupt
      ):
        with self.assertRaises(KeyboardInterrupt):
          transfer.copy_file(
            src,
            os.path.join(work, "dst"),
            lambda n: None,
            lambda: lambda offset, view: None,
          )
      # The writers now hold queued buffers; open files that may reuse the
      # output's descriptor number, then let the writes go.
      bystanders = [
        open(os.path.join(work, f"bystander{i}"), "wb") for i in range(4)
      ]
      release.set()
      for thread in threading.enumerate():
        if thread.name.startswith("copy-writer-"):
          thread.join()
    for bystander in bystanders:
      bystander.close()
      self.assertEqual(os.path.getsize(bystander.name), 0, bystander.name)

  def test_copy_file_refuses_a_shrinking_source(self):
    work = self.create_tempdir().full_path
    src = os.path.join(work, "src")
    with open(src, "wb") as f:
      f.write(bytes(3 * direct_copy._COPY_CHUNK))
    real_fstat = os.fstat

    def fstat_larger(fd):  # The size as it was before something truncated it.
      result = real_fstat(fd)
      return os.stat_result(result[:6] + (result.st_size + 4096,) + result[7:])

    with mock.patch.object(os, "fstat", fstat_larger):
      with self.assertRaisesRegex(
        errors.CorruptCheckpointError, "shrank.*something else writing"
      ):
        transfer.copy_file(
          src,
          os.path.join(work, "dst"),
          lambda n: None,
          lambda: lambda offset, view: None,
        )

  def test_logs_progress(self):
    with mock.patch.object(progress, "_INTERVAL_SECONDS", 0.0):
      with self.assertLogs("absl", level="INFO") as logs:
        estimator_ckpt.convert(
          tool_fixtures.golden_path("est-tf1-ranking"), self._dst(), to="tf2"
        )
    self.assertTrue(
      any(
        "Copying data: 52.3 KiB of 52.3 KiB (100%)" in line
        for line in logs.output
      ),
      logs.output,
    )

  def test_refuses_destination_in_source(self):
    source = tool_fixtures.copy_golden(
      "est-tf1", self.create_tempdir().full_path
    )
    for dst in (source, os.path.join(source, "tf2")):
      with self.assertRaisesRegex(
        errors.DestinationExistsError, "inside it.*outside the source"
      ):
        estimator_ckpt.convert(source, dst, to="tf2")
    self.assertEqual(
      _files(source), _files(tool_fixtures.golden_path("est-tf1"))
    )

  def test_refuses_existing_outputs_unless_overwrite(self):
    source = tool_fixtures.golden_path("est-tf1")
    dst = self._dst()
    estimator_ckpt.convert(source, dst, to="tf2")
    with open(os.path.join(dst, "keep.txt"), "w") as f:
      f.write("not ours")
    with self.assertRaisesRegex(
      errors.DestinationExistsError, "`checkpoint`.*overwrite=True"
    ):
      estimator_ckpt.convert(source, dst, to="tf1")
    prefix = estimator_ckpt.convert(source, dst, to="tf1", overwrite=True)
    self.assertEqual(estimator_ckpt.checkpoint_format(dst), "tf1")
    self.assertEqual(
      _files(dst),
      [
        "checkpoint",
        "keep.txt",
        "model.ckpt-1.data-00000-of-00001",
        "model.ckpt-1.index",
      ],
    )
    self.assertEqual(tf.train.load_variable(prefix, "var"), 2.0)

  def test_dry_run_writes_nothing(self):
    dst = self._dst()
    prefix = estimator_ckpt.convert(
      tool_fixtures.golden_path("est-tf1"), dst, to="tf2", dry_run=True
    )
    self.assertEqual(prefix, os.path.join(dst, "model.ckpt-1"))
    self.assertFalse(os.path.exists(dst))
    self.assertEqual(_files(os.path.dirname(dst)), [])

  def test_failure_leaves_nothing(self):
    dst = self._dst()
    with mock.patch.object(
      local.LocalStorage,
      "fsync_dir",
      side_effect=OSError(errno.EIO, "disk on fire"),
    ):
      with self.assertRaisesRegex(OSError, "disk on fire"):
        estimator_ckpt.convert(
          tool_fixtures.golden_path("est-tf1-ranking"), dst, to="tf2"
        )
    self.assertEqual(_files(os.path.dirname(dst)), [])

  def test_bad_to(self):
    with self.assertRaisesRegex(errors.InvalidArgumentError, "to='tf2'"):
      estimator_ckpt.convert(
        tool_fixtures.golden_path("est-tf1"), self._dst(), to="v2"
      )

  def test_plan_maps_names_to_keys(self):
    (p,) = conversion_plan.plan(tool_fixtures.golden_path("est-tf1"), to="tf2")
    self.assertEqual(
      [(m.source_name, m.key) for m in p.mappings],
      [
        ("global_step", keys.STEP_KEY),
        ("var", "var_list/var/.ATTRIBUTES/VARIABLE_VALUE"),
      ],
    )
    self.assertIn("(and alias global_step)", render.format_plan(p, "/dst"))


if __name__ == "__main__":
  absltest.main()
