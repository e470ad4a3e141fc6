"""Vocabulary-aware warm start: equal, bit for bit, to stock from TF1.

The truth is stock `tf.compat.v1.train.warm_start(tf1_prefix, ...,
var_name_to_vocab_info=...)` from the TF1 original (what
`tf.estimator.WarmStartSettings(var_name_to_vocab_info=...)` runs). Each
case builds the same new model twice and compares every variable's bits
after stock's and estimator_ckpt's warm start, the latter reading the same
values from every layout the warm start reads.
"""

import os

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt._src import warm_start

from examples.guide import converter
from tests import checkpoint_layouts

tf1 = tf.compat.v1

_OLD_WORDS = ["a", "b", "c", "d", "e", "f", "g"]
# Reordered, two words dropped, two new ones.
_NEW_WORDS = ["e", "x", "a", "g", "c", "y"]
_OLD_LABELS = ["neg", "pos", "mid"]
_NEW_LABELS = ["mid", "new", "neg", "pos"]
_HIDDEN = 4

_SOURCE = {
  "linear/x/weights": checkpoint_layouts.distinct_values([7, 1], 1),
  "dnn/emb": checkpoint_layouts.distinct_values([7, _HIDDEN], 100),
  "dnn/hidden/kernel": checkpoint_layouts.distinct_values(
    [_HIDDEN, _HIDDEN], 200
  ),
  "dnn/logits/kernel": checkpoint_layouts.distinct_values([_HIDDEN, 3], 300),
}

# Layouts written from the TF1 original (see `_write_source`);
# `convert_tf2_with_aliases` is the layout of migrated model dirs (the
# Scaffold factory's), Keras checkpoints are tested on their own below.
_LAYOUTS = (
  "tf1",
  "scaffold",
  "stock_tf2",
  "convert_tf2_with_aliases",
  "convert_tf2",
  "guide_vars",
  "object_graph",
  "saved_model",
)

# name -> (linear part, DNN part, emb partitions in source, in target).
_CASES = {
  "linear_oov_backup": ("x", False, 0, 0),
  "renamed_feature": ("renamed", False, 0, 0),
  "new_feature": ("new_feature", False, 0, 0),
  "dnn_1_to_1": (None, True, 0, 0),
  "dnn_3_to_1": (None, True, 3, 0),
  "dnn_3_to_2": (None, True, 3, 2),
  "dnn_1_to_2": (None, True, 0, 2),
  "dnn_1_to_3": (None, True, 0, 3),
}


def _backup():
  # A seeded op: the same values in both graphs (stock calls it per part).
  return tf1.random_uniform_initializer(-1.0, -0.5, seed=7)


def _bits(values):
  return {name: np.asarray(v).view(np.uint32) for name, v in values.items()}


class VocabWarmStartTest(parameterized.TestCase, tf.test.TestCase):
  def setUp(self):
    super().setUp()
    root = self.create_tempdir().full_path
    self._root = root
    self._vocab = {}
    for name, words in (
      ("old", _OLD_WORDS),
      ("new", _NEW_WORDS),
      ("old_labels", _OLD_LABELS),
      ("new_labels", _NEW_LABELS),
    ):
      path = os.path.join(root, name + ".txt")
      with open(path, "w") as f:
        f.write("\n".join(words) + "\n")
      self._vocab[name] = path

  def _info(self, name):
    """The VocabInfo of a (current) variable name."""
    if name.startswith("linear/"):
      return tf.estimator.VocabInfo(
        new_vocab=self._vocab["new"],
        new_vocab_size=len(_NEW_WORDS),
        num_oov_buckets=2,
        old_vocab=self._vocab["old"],
        backup_initializer=_backup(),
      )
    if name == "dnn/emb":
      return tf.estimator.VocabInfo(
        new_vocab=self._vocab["new"],
        new_vocab_size=len(_NEW_WORDS),
        num_oov_buckets=2,
        old_vocab=self._vocab["old"],
        old_vocab_size=5,  # "f" and "g" count as new words.
      )
    return tf.estimator.VocabInfo(
      new_vocab=self._vocab["new_labels"],
      new_vocab_size=len(_NEW_LABELS),
      num_oov_buckets=0,
      old_vocab=self._vocab["old_labels"],
      backup_initializer=_backup(),
      axis=1,
    )

  def _write_source(self, layout, partitions):
    """The TF1 original and `layout`'s checkpoint of the same values."""
    tf1_dir = os.path.join(self._root, "tf1")
    tf1_prefix = checkpoint_layouts.write("tf1", tf1_dir, _SOURCE, partitions)
    target = os.path.join(self._root, layout)
    if layout == "tf1":
      return tf1_prefix, tf1_dir
    if layout in ("scaffold", "stock_tf2"):
      checkpoint_layouts.write(layout, target, _SOURCE, partitions)
      return tf1_prefix, target
    if layout.startswith("convert_tf2"):
      estimator_ckpt.convert(
        tf1_prefix,
        target,
        to="tf2",
        tf1_names=layout == "convert_tf2_with_aliases",
      )
      return tf1_prefix, target
    if layout == "guide_vars":
      prefix = converter.convert_tf1_to_tf2(tf1_prefix, target + "/ckpt")
      return tf1_prefix, prefix
    with tf.Graph().as_default():
      created = checkpoint_layouts.create_variables(_SOURCE, partitions)
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        if layout == "object_graph":
          # Graph-mode variables: each object's full_name is its TF1 name.
          checkpoint = tf.train.Checkpoint(
            **{f"v{i}": v for i, v in enumerate(created.values())}
          )
          return tf1_prefix, checkpoint.save(target + "/ckpt")
        assert layout == "saved_model", layout
        tf1.saved_model.simple_save(
          sess, target, {"x": tf.constant(1.0)}, {"y": tf.constant(1.0)}
        )
        return tf1_prefix, target

  def _new_model(self, linear, dnn, partitions):
    """The new model: variables to warm-start, zeros or constants."""
    tf1.train.get_or_create_global_step()
    zeros = tf1.zeros_initializer()
    rows = len(_NEW_WORDS) + 2
    if linear is not None:
      name = "linear/y/weights" if linear == "renamed" else "linear/x/weights"
      tf1.get_variable(name, [rows, 1], initializer=zeros)
      if linear == "new_feature":
        tf1.get_variable(
          "linear/z/weights", [5, 1], initializer=tf1.constant_initializer(3)
        )
    if dnn:
      tf1.get_variable(
        "dnn/emb",
        [rows, _HIDDEN],
        initializer=zeros,
        partitioner=(
          tf1.fixed_size_partitioner(partitions) if partitions else None
        ),
      )
      tf1.get_variable(
        "dnn/hidden/kernel", [_HIDDEN, _HIDDEN], initializer=zeros
      )
      tf1.get_variable(
        "dnn/logits/kernel", [_HIDDEN, len(_NEW_LABELS)], initializer=zeros
      )

  def _names(self, linear, dnn):
    names = []
    if linear is not None:
      names.append(
        "linear/y/weights" if linear == "renamed" else "linear/x/weights"
      )
      if linear == "new_feature":
        names.append("linear/z/weights")
    if dnn:
      names += ["dnn/emb", "dnn/hidden/kernel", "dnn/logits/kernel"]
    return names

  def _vocab_names(self, linear, dnn):
    return [
      n
      for n in self._names(linear, dnn)
      if n not in ("linear/z/weights",) and n != "dnn/hidden/kernel"
    ]

  def _stock(self, tf1_prefix, linear, dnn, partitions):
    with tf.Graph().as_default():
      self._new_model(linear, dnn, partitions)
      names = self._names(linear, dnn)
      # Stock cannot skip a variable the checkpoint lacks: the new feature
      # is left out of its selection (it keeps its initializer).
      selected = [n for n in names if n != "linear/z/weights"]
      prev = {}
      if linear == "renamed":
        prev["linear/y/weights"] = "linear/x/weights"
      tf1.train.warm_start(
        tf1_prefix,
        vars_to_warm_start=[rf"{n}(/part_\d+)?:0$" for n in selected],
        var_name_to_vocab_info={
          n: self._info(n) for n in self._vocab_names(linear, dnn)
        },
        var_name_to_prev_var_name=prev,
      )
      return checkpoint_layouts.read_values(names)

  def _ours(self, source, linear, dnn, partitions):
    with tf.Graph().as_default():
      self._new_model(linear, dnn, partitions)
      rename = (
        {"linear/y/weights": "linear/x/weights"}
        if linear == "renamed"
        else None
      )
      summary = warm_start.warm_start(
        source,
        rename=rename,
        vocab_info={n: self._info(n) for n in self._vocab_names(linear, dnn)},
      )
      return checkpoint_layouts.read_values(self._names(linear, dnn)), summary

  @parameterized.named_parameters(
    (f"{layout}_{case}", layout, case)
    for layout in _LAYOUTS
    for case in sorted(_CASES)
    # Partitions under arbitrary object names are no layout warm start
    # reads (they are not grouped by their full_name), vocabulary or not.
    if not (layout == "object_graph" and _CASES[case][2])
  )
  def test_equals_stock_from_tf1(self, layout, case):
    linear, dnn, source_parts, target_parts = _CASES[case]
    partitions = {"dnn/emb": source_parts}
    tf1_prefix, source = self._write_source(layout, partitions)
    truth = self._stock(tf1_prefix, linear, dnn, target_parts)
    ours, summary = self._ours(source, linear, dnn, target_parts)
    self.assertEqual(_bits(ours).keys(), _bits(truth).keys())
    for name, bits in _bits(truth).items():
      self.assertAllEqual(_bits(ours)[name], bits, msg=name)
    self.assertEqual(set(summary.remapped), set(self._vocab_names(linear, dnn)))
    if linear == "new_feature":
      self.assertEqual(summary.not_found, ("linear/z/weights",))
      self.assertAllEqual(ours["linear/z/weights"], np.full([5, 1], 3.0))
    if dnn:  # The remapping did something: not a row-for-row copy.
      self.assertEqual(ours["dnn/emb"][0, 0], _SOURCE["dnn/emb"][4, 0])

  def _adagrad_model(self, rows, partitions, value=None):
    """An embedding trained one Adagrad step: it and its slot differ."""
    tf1.train.get_or_create_global_step()
    emb = tf1.get_variable(
      "dnn/emb",
      [rows, _HIDDEN],
      initializer=(
        checkpoint_layouts.slice_initializer(value)
        if value is not None
        else tf1.zeros_initializer()
      ),
      partitioner=tf1.fixed_size_partitioner(partitions)
      if partitions
      else None,
    )
    weights = tf.constant(
      checkpoint_layouts.distinct_values([rows, _HIDDEN], 1)
    )
    loss = tf.reduce_sum(tf.convert_to_tensor(emb) * weights)
    return tf1.train.AdagradOptimizer(0.1).minimize(loss)

  @parameterized.named_parameters(
    ("tf1_1_to_2", "tf1", 0, 2),
    ("tf1_3_to_1", "tf1", 3, 0),
    ("convert_tf2_1_to_3", "convert_tf2", 0, 3),
    ("scaffold_3_to_2", "scaffold", 3, 2),
    ("stock_tf2_3_to_2", "stock_tf2", 3, 2),
    ("stock_tf2_3_to_1", "stock_tf2", 3, 0),
  )
  def test_optimizer_slots_are_remapped_like_their_variable(
    self, layout, source_parts, target_parts
  ):
    tf1_dir = os.path.join(self._root, "tf1")
    with tf.Graph().as_default():
      train = self._adagrad_model(7, source_parts, _SOURCE["dnn/emb"])
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(train)
        tf1_prefix = tf1.train.Saver().save(sess, tf1_dir + "/model.ckpt")
        source = tf1_dir
        if layout == "stock_tf2":
          # One tensor per partition, slots too (`emb.Spart_K.SAdagrad`).
          source = tf.train.Checkpoint(
            var_list={v.op.name: v for v in tf1.global_variables()}
          ).save(os.path.join(self._root, layout, "ckpt"))
        if layout == "scaffold":
          source = os.path.join(self._root, layout)
          tf.io.gfile.makedirs(source)
          # The Scaffold factory's layout: var_list/<name> of one logical
          # tensor each (slices for partitions).
          estimator_ckpt.convert(tf1_prefix, source, to="tf2")
    if layout == "convert_tf2":
      source = os.path.join(self._root, layout)
      estimator_ckpt.convert(tf1_prefix, source, to="tf2", tf1_names=False)
    rows = len(_NEW_WORDS) + 2
    names = ["dnn/emb", "dnn/emb/Adagrad"]
    with tf.Graph().as_default():
      self._adagrad_model(rows, target_parts)
      tf1.train.warm_start(
        tf1_prefix,
        vars_to_warm_start=[rf"{n}(/part_\d+)?:0$" for n in names]
        + [r"dnn/emb/part_\d+/Adagrad:0$"],
        var_name_to_vocab_info={n: self._info("dnn/emb") for n in names},
      )
      truth = checkpoint_layouts.read_values(names)
    with tf.Graph().as_default():
      self._adagrad_model(rows, target_parts)
      summary = warm_start.warm_start(
        source,
        with_optimizer_slots=True,
        vocab_info={"dnn/emb": self._info("dnn/emb")},
      )
      ours = checkpoint_layouts.read_values(names)
    self.assertEqual(summary.remapped, tuple(names))
    for name in names:
      self.assertAllEqual(_bits(ours)[name], _bits(truth)[name], msg=name)
    # The slot was trained (not its 0.1 start) and moved with its rows.
    self.assertNotAllClose(ours["dnn/emb/Adagrad"][0], np.full([_HIDDEN], 0.1))

  @parameterized.named_parameters(("unpartitioned", 0), ("into_2_parts", 2))
  def test_keras_checkpoint_equals_stock(self, target_parts):
    # A Keras model's checkpoint names the table by its Keras name.
    value = _SOURCE["dnn/emb"]
    layer = tf.keras.layers.Embedding(7, _HIDDEN, name="words")
    model = tf.keras.Sequential([layer])
    model.build([None, 1])
    layer.set_weights([value])
    source = os.path.join(self._root, "keras", "w")
    model.save_weights(source)  # TF format: `layer_with_weights-0/...`.
    tf1_prefix = checkpoint_layouts.write(
      "tf1", os.path.join(self._root, "tf1"), {"words/embeddings": value}
    )
    info = self._info("dnn/emb")

    def build():
      tf1.get_variable(
        "words/embeddings",
        [len(_NEW_WORDS) + 2, _HIDDEN],
        initializer=tf1.zeros_initializer(),
        partitioner=(
          tf1.fixed_size_partitioner(target_parts) if target_parts else None
        ),
      )

    with tf.Graph().as_default():
      build()
      tf1.train.warm_start(
        tf1_prefix,
        vars_to_warm_start=[r"words/embeddings(/part_\d+)?:0$"],
        var_name_to_vocab_info={"words/embeddings": info},
      )
      truth = checkpoint_layouts.read_values(["words/embeddings"])
    with tf.Graph().as_default():
      build()
      summary = warm_start.warm_start(
        source, vocab_info={"words/embeddings": info}
      )
      ours = checkpoint_layouts.read_values(["words/embeddings"])
    self.assertEqual(summary.remapped, ("words/embeddings",))
    self.assertAllEqual(
      _bits(ours)["words/embeddings"], _bits(truth)["words/embeddings"]
    )

  @parameterized.named_parameters(("tf1", "tf1"), ("stock_tf2", "stock_tf2"))
  def test_with_a_selection_and_strict(self, layout):
    tf1_prefix, source = self._write_source(layout, {"dnn/emb": 3})
    info = self._info("dnn/emb")
    with tf.Graph().as_default():
      self._new_model(None, True, 2)
      tf1.train.warm_start(
        tf1_prefix,
        vars_to_warm_start=[r"dnn/emb/part_\d+:0$"],
        var_name_to_vocab_info={"dnn/emb": info},
      )
      truth = checkpoint_layouts.read_values(["dnn/emb"])
    with tf.Graph().as_default():
      self._new_model(None, True, 2)
      summary = warm_start.warm_start(
        source,
        vars_to_warm_start=["dnn/emb"],
        strict=True,
        vocab_info={"dnn/emb": info},
      )
      ours = checkpoint_layouts.read_values(["dnn/emb", "dnn/logits/kernel"])
    self.assertEqual(list(summary.warm_started), ["dnn/emb"])
    self.assertAllEqual(_bits(ours)["dnn/emb"], _bits(truth)["dnn/emb"])
    self.assertAllEqual(ours["dnn/logits/kernel"], np.zeros([_HIDDEN, 4]))
    with tf.Graph().as_default():
      self._new_model(None, True, 2)
      with self.assertRaisesRegex(
        errors.IncompatibleCheckpointError, "dnn/emb"
      ):
        warm_start.warm_start(
          source,
          vars_to_warm_start=["dnn/emb"],
          rename={"dnn/emb": "dnn/gone"},
          strict=True,
          vocab_info={"dnn/emb": info},
        )

  def test_unknown_name_is_an_error(self):
    _, source = self._write_source("tf1", {})
    with tf.Graph().as_default():
      self._new_model("x", False, 0)
      with self.assertRaisesRegex(
        errors.InvalidArgumentError, "not warm-started.*linear/y/weights"
      ):
        warm_start.warm_start(
          source, vocab_info={"linear/y/weights": self._info("linear/y")}
        )

  def test_unselected_variable_is_an_error(self):
    _, source = self._write_source("tf1", {})
    with tf.Graph().as_default():
      self._new_model("x", True, 0)
      with self.assertRaisesRegex(
        errors.InvalidArgumentError, "select them with"
      ):
        warm_start.warm_start(
          source,
          vars_to_warm_start=["dnn/"],
          vocab_info={"linear/x/weights": self._info("linear/x")},
        )

  def test_wrong_size_is_an_error_before_any_session(self):
    _, source = self._write_source("stock_tf2", {"dnn/emb": 3})
    info = self._info("dnn/emb")._replace(num_oov_buckets=1)
    with tf.Graph().as_default():
      self._new_model(None, True, 2)
      with self.assertRaisesRegex(
        errors.ShapeMismatchError,
        r"`dnn/emb`.*axis 0 has 8 entries.*new_vocab_size 6 \+ "
        r"num_oov_buckets 1 = 7",
      ):
        warm_start.warm_start(
          source,
          vocab_info={
            "dnn/emb": info,
            "dnn/logits/kernel": self._info("dnn/logits/kernel"),
          },
        )

  def test_missing_vocabulary_file_is_an_error(self):
    _, source = self._write_source("scaffold", {})
    info = self._info("linear/x")._replace(old_vocab=self._root + "/nope")
    with tf.Graph().as_default():
      self._new_model("x", False, 0)
      with self.assertRaisesRegex(
        errors.ShapeMismatchError, "old_vocab file `.*/nope` does not exist"
      ):
        warm_start.warm_start(source, vocab_info={"linear/x/weights": info})

  @parameterized.named_parameters(
    ("not_a_dict", ["x"], errors.ArgumentTypeError, "must be a dict"),
    ("not_vocab_info", {"x": ("a", 1)}, errors.ArgumentTypeError, "VocabInfo"),
    (
      "negative_oov",
      {"x": tf.estimator.VocabInfo("a", 3, -1, "b")},
      errors.InvalidArgumentError,
      "num_oov_buckets",
    ),
  )
  def test_bad_vocab_info_fails_at_call_time(self, vocab_info, error, fragment):
    _, source = self._write_source("tf1", {})
    with self.assertRaisesRegex(error, fragment):
      estimator_ckpt.warm_start_settings(source, vocab_info=vocab_info)

  def test_settings_show_vocab_info_and_go_through_estimator(self):
    _, source = self._write_source("stock_tf2", {"dnn/emb": 3})
    vocab_info = {
      name: self._info(name) for name in ("dnn/emb", "dnn/logits/kernel")
    }
    settings = estimator_ckpt.warm_start_settings(source, vocab_info=vocab_info)
    self.assertEqual(settings._asdict()["vocab_info"], vocab_info)

    def model_fn(features, labels, mode):
      del features, labels
      self._new_model(None, True, 2)
      step = tf1.train.get_global_step()
      return tf.estimator.EstimatorSpec(
        mode, loss=tf.constant(1.0), train_op=step.assign_add(1)
      )

    est = tf.estimator.Estimator(
      model_fn, self._root + "/est", warm_start_from=settings
    )
    est.train(lambda: tf.data.Dataset.from_tensors(({}, 0)), steps=1)
    emb = est.get_variable_value("dnn/emb")
    self.assertAllEqual(emb[0], _SOURCE["dnn/emb"][4])  # "e" was row 4.
    self.assertAllEqual(emb[2], _SOURCE["dnn/emb"][0])  # "a" was row 0.


if __name__ == "__main__":
  absltest.main()
