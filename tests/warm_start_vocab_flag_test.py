"""--warm_start_vocab: parsed in-process, and end to end through a binary.

The binary is the ranking trainer (examples/ranking, `//estimator_ckpt:train`
for users), which defines the checkpoint flags like any binary would: it
warm-starts the shipped TF1 ranking model dir with the user ids' vocabulary
reversed, and trains one step.
"""

import os
import subprocess
import sys

from absl import flags
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt._src import checkpoint_flags

from tests import fixtures

_SOURCE = fixtures.testdata_path(fixtures.GOLDENS["est-tf1-ranking"])
_USERS = 200  # RankingParams.num_users of the shipped model.


def _parse(*args):
  flag_values = flags.FlagValues()
  checkpoint_flags.define_checkpoint_flags(flag_values)
  flag_values(["prog", *args])
  return flag_values


def _trainer():
  """The train binary under Bazel (a data dep), else its module."""
  if "TEST_SRCDIR" in os.environ:
    path = os.path.join(
      os.environ["TEST_SRCDIR"],
      os.environ["TEST_WORKSPACE"],
      "examples",
      "ranking",
      "train",
    )
    assert os.path.exists(path), path
    return [path]
  return [sys.executable, "-m", "examples.ranking.train_main"]


class WarmStartVocabFlagTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    self._root = self.create_tempdir().full_path
    self._old = self._file("old.txt", [f"user{i}" for i in range(_USERS)])
    self._new = self._file(
      "new.txt", [f"user{i}" for i in reversed(range(_USERS))]
    )

  def _file(self, name, words):
    path = os.path.join(self._root, name)
    with open(path, "w") as f:
      f.write("\n".join(words) + "\n")
    return path

  def test_defaults_and_every_option(self):
    settings = checkpoint_flags.checkpoint_settings_from_flags(
      _parse(
        f"--model_dir={self._root}/model",
        f"--warm_start_from={_SOURCE}",
        f"--warm_start_vocab=user_embedding={self._new},{self._old}",
        f"--warm_start_vocab=logits/kernel={self._new},{self._old},"
        "new_size=3,oov=2,old_size=4,axis=1",
      )
    )
    vocab_info = settings.warm_start_from._asdict()["vocab_info"]
    self.assertEqual(
      vocab_info["user_embedding"],
      tf.estimator.VocabInfo(self._new, _USERS, 0, self._old, -1, None, 0),
    )
    self.assertEqual(
      vocab_info["logits/kernel"],
      tf.estimator.VocabInfo(self._new, 3, 2, self._old, 4, None, 1),
    )

  @parameterized.named_parameters(
    ("one_file", "user_embedding={new}", "two vocabulary files"),
    ("no_name", "={new},{old}", "needs a variable name"),
    ("unknown_option", "e={new},{old},buckets=2", "unknown option `buckets"),
    ("not_a_number", "e={new},{old},oov=two", "`oov` must be an integer"),
    ("bad_axis", "e={new},{old},axis=2", "axis must be 0"),
    ("missing_file", "e={new},{root}/nope.txt", "`{root}/nope.txt` does not"),
    ("twice", ["e={new},{old}", "e={old},{new}"], "`e` is given twice"),
  )
  def test_bad_specs_fail_at_parse_with_the_syntax(self, values, fragment):
    values = [values] if isinstance(values, str) else values
    names = {"new": self._new, "old": self._old, "root": self._root}
    args = [f"--warm_start_vocab={v.format(**names)}" for v in values]
    with self.assertRaises(flags.IllegalFlagValueError) as raised:
      _parse(
        f"--model_dir={self._root}/m", f"--warm_start_from={_SOURCE}", *args
      )
    self.assertIn(fragment.format(**names), str(raised.exception))
    if "twice" not in fragment:
      self.assertIn("VARIABLE=NEW_VOCAB,OLD_VOCAB", str(raised.exception))

  def test_needs_warm_start_from(self):
    with self.assertRaisesRegex(
      flags.IllegalFlagValueError, "--warm_start_vocab needs --warm_start_from"
    ):
      _parse(
        f"--model_dir={self._root}/m",
        f"--warm_start_vocab=e={self._new},{self._old}",
      )

  def test_end_to_end_through_the_trainer(self):
    model_dir = os.path.join(self._root, "model")
    result = subprocess.run(
      [
        *_trainer(),
        f"--model_dir={model_dir}",
        "--mode=train",
        "--train_steps=1",
        f"--warm_start_from={_SOURCE}",
        f"--warm_start_vocab=user_embedding={self._new},{self._old}",
      ],
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn(
      "remapped to a new vocabulary: `user_embedding`", result.stderr
    )
    old = estimator_ckpt.load_variable(_SOURCE, "user_embedding")
    new = estimator_ckpt.load_variable(model_dir, "user_embedding")
    # Rows the one training step did not touch are exactly the remapped
    # ones (row i is the old row of user i, now at line 199 - i); the rest
    # moved by one small Adam step.
    reversed_rows = old[::-1]
    exact = np.all(new == reversed_rows, axis=1)
    self.assertGreater(exact.sum(), _USERS // 2)
    np.testing.assert_allclose(new, reversed_rows, atol=0.05)
    self.assertLess(np.all(new == old, axis=1).sum(), 2)

    bad = subprocess.run(
      [
        *_trainer(),
        f"--model_dir={model_dir}2",
        "--mode=train",
        f"--warm_start_from={_SOURCE}",
        f"--warm_start_vocab=user_embedding={self._new}",
      ],
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
    )
    self.assertNotEqual(bad.returncode, 0)
    self.assertIn("VARIABLE=NEW_VOCAB,OLD_VOCAB", bad.stderr)
    self.assertNotIn("Traceback", bad.stderr)


if __name__ == "__main__":
  absltest.main()
