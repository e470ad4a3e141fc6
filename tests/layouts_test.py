"""layouts.py: which keys hold each TF1 name, in checkpoints TF writes.

One table row per layout: a small checkpoint written by real TensorFlow the
way that layout's writer does, and where `layouts.resolve` finds each
variable (layout, keys, number of parts). Then the precedence cases: two keys
claiming one name (same value: one variable; different values: each listed by
key), a decoded name against a `full_name`, stock parts that do not fit.
"""

import os
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import keys
from estimator_ckpt._src import layouts
from estimator_ckpt._src import slice_geometry
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import protos

from examples.guide import converter
from tests import checkpoint_layouts
from tests import tool_tf_fixtures

tf1 = tf.compat.v1
Layout = layouts.Layout

_VALUES = {
  "dense/kernel": checkpoint_layouts.distinct_values([3, 2]),
  "emb": checkpoint_layouts.distinct_values([6, 2], 100),
}
_KERNEL_KEY = keys.variable_key("dense/kernel")
_EMB_KEY = keys.variable_key("emb")


def _vars_key(name: str) -> str:
  return f"{keys.GUIDE_CONVERTED_VAR_LIST}/{keys.escape(name)}" + (
    keys.VARIABLE_VALUE_SUFFIX
  )


def _var_list_key(name: str) -> str:
  # Not keys.variable_key: that stores `global_step` under `step/`.
  return f"{keys.VAR_LIST}/{keys.escape(name)}{keys.VARIABLE_VALUE_SUFFIX}"


def _resolve(prefix: str):
  """`layouts.resolve` of a checkpoint whose object graph TF parses."""
  checkpoint = bundle.read(prefix)
  tf_reader = tf.train.load_checkpoint(prefix)
  graph = None
  if tf_reader.has_tensor(keys.OBJECT_GRAPH_KEY):
    graph = protos.TrackableObjectGraph.FromString(
      tf_reader.get_tensor(keys.OBJECT_GRAPH_KEY)
    )
  return checkpoint, layouts.resolve(checkpoint, graph)


def _where(variables):
  """Name -> (layout, keys, number of parts)."""
  return {
    name: (v.layout, v.keys, len(v.parts)) for name, v in variables.items()
  }


# Writers: directory -> checkpoint prefix, each the way one writer saves.


def _tf1_saver(directory):
  return checkpoint_layouts.write("tf1", directory, _VALUES, {"emb": 2})


def _scaffold_factory(directory):
  return checkpoint_layouts.write("scaffold", directory, _VALUES, {"emb": 2})


def _guide_var_list(directory):
  # The guide's "Save a TF2 checkpoint in TF1": Checkpoint(var_list={...}).
  return checkpoint_layouts.write("stock_tf2", directory, _VALUES)


def _stock_parts(directory):
  return checkpoint_layouts.write("stock_tf2", directory, _VALUES, {"emb": 3})


def _guide_vars(directory):
  return converter.convert_tf1_to_tf2(
    _tf1_saver(os.path.join(directory, "tf1")),
    os.path.join(directory, "converted"),
  )


def _full_names(directory):
  # Graph-mode variables tracked under other names: only full_name says.
  with tf.Graph().as_default():
    created = checkpoint_layouts.create_variables(
      {"dense/kernel": _VALUES["dense/kernel"]}
    )
    ckpt = tf.train.Checkpoint(weights=created["dense/kernel"])
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      return ckpt.write(os.path.join(directory, "ckpt"))


def _unnamed(directory):
  # Eager variables are all called `Variable`: that names none of them.
  return tf.train.Checkpoint(v=[tf.Variable(1.0), tf.Variable(2.0)]).write(
    os.path.join(directory, "ckpt")
  )


class ResolveTest(parameterized.TestCase, tf.test.TestCase):
  def _dir(self):
    return self.create_tempdir().full_path

  @parameterized.named_parameters(
    (
      "tf1_saver",
      _tf1_saver,
      {
        "dense/kernel": (Layout.TF1_NAME, ("dense/kernel",), 1),
        "emb": (Layout.TF1_NAME, ("emb",), 2),
        "global_step": (Layout.TF1_NAME, ("global_step",), 1),
      },
    ),
    (
      "scaffold_factory_var_list",
      _scaffold_factory,
      {
        "dense/kernel": (Layout.VAR_LIST, (_KERNEL_KEY,), 1),
        "emb": (Layout.VAR_LIST, (_EMB_KEY,), 2),
        "global_step": (
          Layout.VAR_LIST,
          (keys.STEP_KEY, keys.GLOBAL_STEP_NAME),
          1,
        ),
      },
    ),
    (
      "guide_var_list",
      _guide_var_list,
      {
        "dense/kernel": (Layout.VAR_LIST, (_KERNEL_KEY,), 1),
        "emb": (Layout.VAR_LIST, (_EMB_KEY,), 1),
        "global_step": (Layout.VAR_LIST, (_var_list_key("global_step"),), 1),
      },
    ),
    (
      "guide_vars",
      _guide_vars,
      {
        "dense/kernel": (Layout.GUIDE_VARS, (_vars_key("dense/kernel"),), 1),
        "emb": (Layout.GUIDE_VARS, (_vars_key("emb"),), 1),
        "global_step": (Layout.GUIDE_VARS, (_vars_key("global_step"),), 1),
      },
    ),
    (
      "full_names",
      _full_names,
      {
        "dense/kernel": (
          Layout.FULL_NAME,
          ("weights/.ATTRIBUTES/VARIABLE_VALUE",),
          1,
        ),
      },
    ),
    (
      "stock_parts",
      _stock_parts,
      {
        "dense/kernel": (Layout.VAR_LIST, (_KERNEL_KEY,), 1),
        "emb": (
          Layout.STOCK_PARTS,
          tuple(_var_list_key(f"emb/part_{i}") for i in range(3)),
          3,
        ),
        "global_step": (Layout.VAR_LIST, (_var_list_key("global_step"),), 1),
      },
    ),
    (
      "unnamed_object_paths",
      _unnamed,
      {
        "v/0/.ATTRIBUTES/VARIABLE_VALUE": (
          Layout.KEY,
          ("v/0/.ATTRIBUTES/VARIABLE_VALUE",),
          1,
        ),
        "v/1/.ATTRIBUTES/VARIABLE_VALUE": (
          Layout.KEY,
          ("v/1/.ATTRIBUTES/VARIABLE_VALUE",),
          1,
        ),
      },
    ),
  )
  def test_layout(self, write, expected):
    _, variables = _resolve(write(self._dir()))
    self.assertEqual(_where(variables), expected)

  @parameterized.named_parameters(
    ("tf1_saver", _tf1_saver),
    ("scaffold_factory_var_list", _scaffold_factory),
    ("guide_var_list", _guide_var_list),
    ("guide_vars", _guide_vars),
    ("stock_parts", _stock_parts),
  )
  def test_every_layout_holds_the_same_values(self, write):
    prefix = write(self._dir())
    _, variables = _resolve(prefix)
    self.assertEqual(variables["emb"].shape, (6, 2))
    for name, value in _VALUES.items():
      self.assertAllEqual(
        estimator_ckpt.load_variable(prefix, name), value, msg=name
      )

  def test_stock_parts_are_slices_along_axis_0(self):
    _, variables = _resolve(_stock_parts(self._dir()))
    emb = variables["emb"]
    self.assertTrue(emb.partitioned)
    self.assertEqual(
      [part.slice.bounds(emb.shape) for part in emb.parts],
      [[(0, 2), (0, 2)], [(2, 4), (0, 2)], [(4, 6), (0, 2)]],
    )
    self.assertEqual(
      [layouts.key_name(part.key) for part in emb.parts],
      [_var_list_key(f"emb/part_{i}") for i in range(3)],
    )

  def test_slots_of_stock_parts_are_one_variable_like_their_variable(self):
    # slot_creator names each partition's slot `emb/part_<i>/Adagrad`; its
    # full_name is the whole slot's, `emb/Adagrad` (issue 18 item 4).
    with tf.Graph().as_default():
      emb = checkpoint_layouts.create_variables(
        {"emb": _VALUES["emb"]}, {"emb": 3}
      )
      loss = tf.reduce_sum(tf.convert_to_tensor(emb["emb"]))
      train = tf1.train.AdagradOptimizer(0.5).minimize(loss)
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(train)
        prefix = tf.train.Checkpoint(
          var_list={v.op.name: v for v in tf1.global_variables()}
        ).save(os.path.join(self._dir(), "ckpt"))
    _, variables = _resolve(prefix)
    self.assertEqual(
      _where(variables)["emb/Adagrad"],
      (
        Layout.STOCK_PARTS,
        tuple(_var_list_key(f"emb/part_{i}/Adagrad") for i in range(3)),
        3,
      ),
    )
    self.assertNotIn("emb/part_0/Adagrad", variables)
    self.assertAllEqual(
      estimator_ckpt.load_variable(prefix, "emb/Adagrad"),
      np.full([6, 2], 0.1 + 1.0, np.float32),
    )

  def test_decoded_name_beats_full_name(self):
    # `Checkpoint(var_list={"renamed": v})` stores v for `renamed`, whatever
    # v was called; the key answers to that one name only.
    prefix = tf.train.Checkpoint(
      var_list={"renamed": tf.Variable(1.0, name="original")}
    ).write(os.path.join(self._dir(), "ckpt"))
    _, variables = _resolve(prefix)
    self.assertEqual(
      _where(variables),
      {"renamed": (Layout.VAR_LIST, (_var_list_key("renamed"),), 1)},
    )

  def test_raw_key_next_to_the_object_graph_is_a_tf1_name(self):
    # As the Scaffold factory saves lookup tables: by name, not in the graph.
    prefix = tool_tf_fixtures.save_v2(
      os.path.join(self._dir(), "ckpt"),
      {
        keys.OBJECT_GRAPH_KEY: tf.constant(
          keys.object_graph(["w"], step_name=None).SerializeToString()
        ),
        keys.variable_key("w"): tf.constant(1.0),
        "table-keys": tf.constant([b"a", b"b"]),
      },
    )
    _, variables = _resolve(prefix)
    self.assertEqual(
      _where(variables),
      {
        "table-keys": (Layout.TF1_NAME, ("table-keys",), 1),
        "w": (Layout.VAR_LIST, (keys.variable_key("w"),), 1),
      },
    )


class PrecedenceTest(parameterized.TestCase, tf.test.TestCase):
  def _dir(self):
    return self.create_tempdir().full_path

  def test_global_step_alias_sharing_bytes_is_one_variable(self):
    # The converter points the alias at the bytes of `step/...`.
    tf1_prefix = _tf1_saver(self._dir())
    prefix = estimator_ckpt.convert(
      tf1_prefix, os.path.join(self._dir(), "tf2"), to="tf2"
    )
    checkpoint, variables = _resolve(prefix)
    step = variables["global_step"]
    self.assertEqual(step.keys, (keys.STEP_KEY, keys.GLOBAL_STEP_NAME))
    self.assertEqual(step.layout, Layout.VAR_LIST)
    self.assertEqual(step.parts[0].key, keys.STEP_KEY.encode())
    alias = checkpoint.entries[keys.GLOBAL_STEP_NAME.encode()]
    self.assertEqual(alias.offset, step.parts[0].entry.offset)
    self.assertNotIn(keys.STEP_KEY, variables)

  def test_same_value_under_two_decoded_keys_is_one_variable(self):
    prefix = tf.train.Checkpoint(
      var_list={"x": tf.Variable(1.0)}, vars={"x": tf.Variable(1.0)}
    ).write(os.path.join(self._dir(), "ckpt"))
    _, variables = _resolve(prefix)
    self.assertEqual(
      _where(variables),
      {"x": (Layout.VAR_LIST, (_var_list_key("x"), _vars_key("x")), 1)},
    )

  @parameterized.named_parameters(
    ("stale_global_step_alias", {keys.STEP_KEY: 2, keys.GLOBAL_STEP_NAME: 1}),
    ("var_list_and_vars", {_var_list_key("x"): 1, _vars_key("x"): 2}),
  )
  def test_different_values_are_listed_by_key(self, tensors):
    # Neither claim wins: the stale alias must not become the step, and the
    # higher claim winning would hide the other tensor.
    prefix = tool_tf_fixtures.save_v2(
      os.path.join(self._dir(), "ckpt"),
      {
        keys.OBJECT_GRAPH_KEY: tf.constant(
          keys.object_graph([]).SerializeToString()
        ),
        **{key: tf.constant(value, tf.int64) for key, value in tensors.items()},
      },
    )
    with self.assertLogs("absl", "WARNING") as logs:
      _, variables = _resolve(prefix)
    self.assertIn(
      "with different values; listing each under its key", logs.output[0]
    )
    self.assertEqual(
      _where(variables), {key: (Layout.KEY, (key,), 1) for key in tensors}
    )

  def test_stock_parts_that_do_not_fit_are_listed_by_key(self):
    part_keys = [_var_list_key("emb/part_0"), _var_list_key("emb/part_2")]
    graph = keys.object_graph(["emb/part_0", "emb/part_2"], step_name=None)
    for node in graph.nodes:
      for attribute in node.attributes:
        attribute.full_name = "emb"  # As stock TF names every partition.
    prefix = tool_tf_fixtures.save_v2(
      os.path.join(self._dir(), "ckpt"),
      {
        keys.OBJECT_GRAPH_KEY: tf.constant(graph.SerializeToString()),
        **{key: tf.zeros([2, 3]) for key in part_keys},
      },
    )
    with self.assertLogs("absl", "WARNING") as logs:
      _, variables = _resolve(prefix)
    self.assertIn("the part numbers are [0, 2], not 0..1", logs.output[0])
    self.assertEqual(
      _where(variables), {key: (Layout.KEY, (key,), 1) for key in part_keys}
    )

  def test_find_by_name_then_raw_key_then_listed_key(self):
    checkpoint, variables = _resolve(_scaffold_factory(self._dir()))
    self.assertIs(layouts.find(checkpoint, variables, "emb"), variables["emb"])
    # A raw key is its own tensor, also when it is the first of an alias.
    step = layouts.find(checkpoint, variables, keys.STEP_KEY)
    self.assertEqual(
      (step.name, step.keys, step.layout),
      (keys.STEP_KEY, (keys.STEP_KEY,), Layout.KEY),
    )
    self.assertIsNone(layouts.find(checkpoint, variables, "nope"))

  @parameterized.named_parameters(
    ("differ_in_axis_0", [[2, 3], [4, 3]], None, 0),
    ("differ_in_axis_1", [[2, 3], [2, 5]], None, 1),
    ("equal_shapes", [[2, 2], [2, 2]], None, 0),
    ("equal_shapes_model_says_axis_1", [[2, 2], [2, 2]], [2, 4], 1),
    ("fit_the_model", [[2, 3], [4, 3]], [6, 3], 0),
    ("do_not_fit_the_model", [[2, 3], [4, 3]], [6, 4], None),
    ("differ_in_two_axes", [[2, 3], [3, 4]], None, None),
    ("rank_0", [[], []], None, None),
    ("ranks_differ", [[2], [2, 1]], None, None),
    ("no_parts", [], None, None),
  )
  def test_concat_axis(self, shapes, full_shape, expected):
    self.assertEqual(slice_geometry.concat_axis(shapes, full_shape), expected)


# Saves, under ParameterServerStrategy on a real in-process cluster (one
# worker, two ps on 127.0.0.1, as TF's multi_worker_test_base
# create_in_process_cluster), a 6x2 table the strategy shards in two (a
# ShardedVariable) and a variable it does not, as the guide does
# (`var_list/`) and as plain attributes. In a child process: the strategy
# connects the eager context to the cluster for good, and in-process servers
# cannot be stopped.
_PARAMETER_SERVER_WRITER = """
import os
import socket
import sys

import numpy as np
import tensorflow as tf


def free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


jobs = {"worker": 1, "ps": 2}
spec = tf.train.ClusterSpec({
  job: [f"127.0.0.1:{free_port()}" for _ in range(count)]
  for job, count in jobs.items()
})
servers = [
  tf.distribute.Server(spec, job_name=job, task_index=i, protocol="grpc")
  for job, count in jobs.items()
  for i in range(count)
]
strategy = tf.distribute.experimental.ParameterServerStrategy(
  tf.distribute.cluster_resolver.SimpleClusterResolver(spec, rpc_layer="grpc"),
  variable_partitioner=(
    tf.distribute.experimental.partitioners.FixedShardsPartitioner(2)
  ),
)
with strategy.scope():
  emb = tf.Variable(np.arange(12, dtype=np.float32).reshape(6, 2), name="emb")
  bias = tf.Variable([7.0], name="bias")  # One row: not sharded.
assert type(emb).__name__ == "ShardedVariable", type(emb)
directory = sys.argv[1]
tf.train.Checkpoint(var_list={"emb": emb, "dense/bias": bias}).write(
  os.path.join(directory, "var_list", "ckpt"))
tf.train.Checkpoint(emb=emb, bias=bias).write(
  os.path.join(directory, "attributes", "ckpt"))
"""


class ShardedVariableTest(tf.test.TestCase):
  def test_sharded_table_is_named_by_its_key_never_sharded_variable(self):
    directory = self.create_tempdir().full_path
    subprocess.run(
      [sys.executable, "-c", _PARAMETER_SERVER_WRITER, directory],
      check=True,
      timeout=120,
    )
    var_list_prefix = os.path.join(directory, "var_list", "ckpt")
    # What TensorFlow writes: the table's slices, recorded in the object
    # graph under the ShardedVariable's default name.
    graph = protos.TrackableObjectGraph.FromString(
      tf.train.load_checkpoint(var_list_prefix).get_tensor(
        keys.OBJECT_GRAPH_KEY
      )
    )
    self.assertEqual(keys.full_names_by_key(graph)[_EMB_KEY], "ShardedVariable")
    _, variables = _resolve(var_list_prefix)
    self.assertEqual(
      _where(variables),
      {
        "dense/bias": (Layout.VAR_LIST, (_var_list_key("dense/bias"),), 1),
        "emb": (Layout.VAR_LIST, (_EMB_KEY,), 2),
      },
    )
    tf1_dir = os.path.join(self.create_tempdir().full_path, "tf1")
    estimator_ckpt.convert(var_list_prefix, tf1_dir, to="tf1")
    self.assertEqual(
      tf.train.list_variables(tf1_dir), [("dense/bias", [1]), ("emb", [6, 2])]
    )
    self.assertAllEqual(
      tf.train.load_variable(tf1_dir, "emb"),
      np.arange(12, dtype=np.float32).reshape(6, 2),
    )
    # Without a `var_list/` key the table has no name: it is listed under
    # its key, not as `ShardedVariable`.
    _, variables = _resolve(os.path.join(directory, "attributes", "ckpt"))
    self.assertEqual(
      _where(variables),
      {
        "bias": (Layout.FULL_NAME, ("bias/.ATTRIBUTES/VARIABLE_VALUE",), 1),
        "emb/.ATTRIBUTES/VARIABLE_VALUE": (
          Layout.KEY,
          ("emb/.ATTRIBUTES/VARIABLE_VALUE",),
          2,
        ),
      },
    )


if __name__ == "__main__":
  absltest.main()
