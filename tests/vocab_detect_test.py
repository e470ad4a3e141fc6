"""No silent misalignment: a changed vocabulary without vocab_info raises.

Canned estimators are trained one step into a model_dir with one
vocabulary, then warm-started with another; the error must come before any
step and name the variable, both vocabularies, the first difference and the
VocabInfo to pass, and `vocab_info` (or leaving the variable out) must
silence it.
"""

import os

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors

_WORDS = ["a", "b", "c", "d"]
_LABELS = ["neg", "pos", "mid"]
_EMBEDDING = (
  "dnn/input_from_feature_columns/input_layer/w_embedding/embedding_weights"
)


def _input_fn():
  features = {
    "w": tf.constant([["a"], ["c"]]),
    "l": tf.constant([["p"], ["q"]]),
  }
  return features, tf.constant([["neg"], ["mid"]])


class _StepCounter(tf.estimator.SessionRunHook):
  def __init__(self):
    self.steps = 0

  def after_run(self, run_context, run_values):
    self.steps += 1


class VocabularyChangedTest(parameterized.TestCase, tf.test.TestCase):
  def setUp(self):
    super().setUp()
    self._root = self.create_tempdir().full_path

  def _file(self, name, words):
    path = os.path.join(self._root, name)
    with open(path, "w") as f:
      f.write("\n".join(words) + "\n")
    return path

  def _dnn(self, model_dir, words_file, labels, warm_start_from=None):
    column = tf.feature_column.categorical_column_with_vocabulary_file(
      "w", words_file, num_oov_buckets=1
    )
    return tf.estimator.DNNClassifier(
      [2],
      [tf.feature_column.embedding_column(column, 2)],
      model_dir=model_dir,
      n_classes=len(labels),
      label_vocabulary=labels,
      warm_start_from=warm_start_from,
    )

  def _linear(self, model_dir, words, warm_start_from=None):
    column = tf.feature_column.categorical_column_with_vocabulary_list(
      "l", words
    )
    return tf.estimator.LinearClassifier(
      [column],
      model_dir=model_dir,
      n_classes=3,
      label_vocabulary=_LABELS,
      warm_start_from=warm_start_from,
    )

  def _assert_refused(self, estimator, pattern):
    counter = _StepCounter()
    with self.assertRaisesRegex(errors.VocabularyChangedError, pattern):
      estimator.train(_input_fn, steps=1, hooks=[counter])
    self.assertEqual(counter.steps, 0)
    self.assertIsNone(tf.train.latest_checkpoint(estimator.model_dir))

  def test_reordered_same_size_vocabulary_file(self):
    old = self._file("old.txt", _WORDS)
    self._dnn(self._root + "/old", old, _LABELS).train(_input_fn, steps=1)
    new = self._file("new.txt", ["c", "a", "b", "d"])
    settings = estimator_ckpt.warm_start_settings(self._root + "/old")
    self._assert_refused(
      self._dnn(self._root + "/new", new, _LABELS, settings),
      rf"`{_EMBEDDING}` \(axis 0\) is indexed by a vocabulary that "
      rf"changed: the checkpoint's model used file `{old}` \(4 entries\), "
      rf"this model uses file `{new}` \(4 entries\); first difference: "
      r"entry 0 was 'a' and is 'c'\. Pass vocab_info=.*"
      r"new_vocab_size=4, num_oov_buckets=1, .*axis=0\)",
    )
    # The suggested VocabInfo silences it and remaps.
    info = tf.estimator.VocabInfo(new, 4, 1, old)
    est = self._dnn(
      self._root + "/fixed",
      new,
      _LABELS,
      estimator_ckpt.warm_start_settings(
        self._root + "/old", vocab_info={_EMBEDDING: info}
      ),
    )
    est.train(_input_fn, steps=1)
    self.assertIsNotNone(tf.train.latest_checkpoint(est.model_dir))

  def test_reordered_label_vocabulary(self):
    words = self._file("words.txt", _WORDS)
    self._dnn(self._root + "/old", words, _LABELS).train(_input_fn, steps=1)
    settings = estimator_ckpt.warm_start_settings(self._root + "/old")
    self._assert_refused(
      self._dnn(self._root + "/new", words, ["mid", "neg", "pos"], settings),
      r"`dnn/logits/bias` \(axis 0\) is indexed by a label vocabulary that "
      r"changed: .*in-graph list \(3 entries\).*entry 0 was 'neg' and is "
      r"'mid'\. VocabInfo remaps matrices only(.|\n)*`dnn/logits/kernel` "
      r"\(axis 1\).*Pass vocab_info=.*axis=1\)",
    )
    # Excluding the output layer silences it.
    est = self._dnn(
      self._root + "/new2",
      words,
      ["mid", "neg", "pos"],
      estimator_ckpt.warm_start_settings(
        self._root + "/old", vars_to_warm_start=".*input_from_feature.*"
      ),
    )
    est.train(_input_fn, steps=1)

  def test_in_graph_list(self):
    self._linear(self._root + "/old", ["p", "q", "r"]).train(_input_fn, steps=1)
    settings = estimator_ckpt.warm_start_settings(self._root + "/old")
    self._assert_refused(
      self._linear(self._root + "/new", ["q", "p", "r"], settings),
      r"`linear/linear_model/l/weights` \(axis 0\) is indexed by a "
      r"vocabulary that changed: the checkpoint's model used in-graph list "
      r"\(3 entries\), this model uses in-graph list \(3 entries\); first "
      r"difference: entry 0 was 'p' and is 'q'",
    )

  def test_from_a_migrated_model_dir(self):
    # TF2 checkpoints of the Scaffold factory; Estimator's graph.pbtxt.
    old = self._file("old.txt", _WORDS)
    estimator_ckpt.migrate_estimator(
      self._dnn(self._root + "/old", old, _LABELS)
    ).train(_input_fn, steps=1)
    self.assertEqual(
      estimator_ckpt.checkpoint_format(self._root + "/old"), "tf2"
    )
    new = self._file("new.txt", ["a", "b", "d", "c"])
    settings = estimator_ckpt.warm_start_settings(self._root + "/old")
    self._assert_refused(
      self._dnn(self._root + "/new", new, _LABELS, settings),
      r"first difference: entry 2 was 'c' and is 'd'",
    )

  def test_unchanged_vocabularies_pass(self):
    words = self._file("words.txt", _WORDS)
    self._dnn(self._root + "/old", words, _LABELS).train(_input_fn, steps=1)
    est = self._dnn(
      self._root + "/new",
      self._file("copy.txt", _WORDS),
      _LABELS,
      estimator_ckpt.warm_start_settings(self._root + "/old"),
    )
    est.train(_input_fn, steps=1)
    self.assertAllEqual(
      est.get_variable_value("dnn/logits/kernel").shape, [2, 3]
    )


if __name__ == "__main__":
  absltest.main()
