r"""Regenerates the golden checkpoints and data in testdata/.

Dry run by default: builds everything in a temporary directory and reports
what would change. Pass --write to replace testdata/ contents.

  bazel run //testdata:generate            # dry run
  bazel run //testdata:generate -- --write

Every golden is described in testdata/README.md and restored by
tests/testdata_test.py against testdata/MANIFEST.json.
"""

import filecmp
import json
import os
import shutil
import tempfile
from typing import Sequence

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

# Public v1 update_checkpoint_state cannot write relative paths.
from tensorflow.python.checkpoint import checkpoint_management

from examples.guide import models as guide_models
from examples.ranking import data as ranking_data
from examples.ranking import model as ranking_model
from tests import fixtures

tf1 = tf.compat.v1

_WRITE = flags.DEFINE_bool(
  "write", False, "Replace the files in --testdata_dir (default: dry run)."
)
_TESTDATA_DIR = flags.DEFINE_string(
  "testdata_dir",
  None,
  "Where the goldens live. Default: testdata/ of the workspace that "
  "`bazel run` was called in.",
)

RANKING_TRAIN_ROWS = 4000
RANKING_EVAL_ROWS = 1000
RANKING_STEPS = 20
SEED = 20261122


def _relativize_state_file(model_dir: str) -> None:
  """Rewrites a `checkpoint` state file with paths relative to its dir.

  `tf.train.Checkpoint` used as a Scaffold saver, and `Saver.save`, write
  absolute paths; goldens must work wherever the repository is cloned.
  """
  state = tf.train.get_checkpoint_state(model_dir)
  checkpoint_management.update_checkpoint_state_internal(
    model_dir,
    os.path.basename(state.model_checkpoint_path),
    [os.path.basename(p) for p in state.all_model_checkpoint_paths],
    save_relative_paths=True,
  )


def _prune_model_dir(model_dir: str) -> None:
  """Drops event files and graph.pbtxt: large and not checkpoint data."""
  for name in os.listdir(model_dir):
    path = os.path.join(model_dir, name)
    if name.startswith("events.out") or name == "graph.pbtxt":
      os.remove(path)
    elif os.path.isdir(path):  # Estimator's eval/ event dirs.
      shutil.rmtree(path)


def make_guide_checkpoints(out: str) -> None:
  """The guide's `tf1-ckpt` and `tf2-ckpt` ("Changes from TF1 to TF2")."""
  os.makedirs(os.path.join(out, "tf1-ckpt"))
  with tf.Graph().as_default():
    a = tf1.get_variable(
      "a", shape=[], dtype=tf.float32, initializer=tf1.zeros_initializer()
    )
    b = tf1.get_variable(
      "b", shape=[], dtype=tf.float32, initializer=tf1.zeros_initializer()
    )
    c = tf1.get_variable(
      "scoped/c",
      shape=[],
      dtype=tf.float32,
      initializer=tf1.zeros_initializer(),
    )
    with tf1.Session() as sess:
      saver = tf1.train.Saver()
      sess.run(a.assign(1))
      sess.run(b.assign(2))
      sess.run(c.assign(3))
      saver.save(sess, os.path.join(out, "tf1-ckpt", "tf1-ckpt"))
  _relativize_state_file(os.path.join(out, "tf1-ckpt"))

  # Eager, as in the guide.
  a = tf.Variable(5.0, name="a")
  b = tf.Variable(6.0, name="b")
  with tf.name_scope("scoped"):
    c = tf.Variable(7.0, name="c")
  ckpt = tf.train.Checkpoint(variables=[a, b, c])
  ckpt.save(os.path.join(out, "tf2-ckpt", "tf2-ckpt"))
  _relativize_state_file(os.path.join(out, "tf2-ckpt"))


def make_guide_estimator_dirs(out: str) -> None:
  """The guide's est-tf1 (1 step) and est-tf2 (warm-started, 1 step)."""
  est_tf1 = os.path.join(out, "est-tf1")
  est = tf.estimator.Estimator(guide_models.model_fn_tf1_ckpt, est_tf1)
  est.train(guide_models.train_input_fn, steps=1)
  _prune_model_dir(est_tf1)

  est_tf2 = os.path.join(out, "est-tf2")
  est = tf.estimator.Estimator(
    guide_models.model_fn_tf2_ckpt, est_tf2, warm_start_from=est_tf1
  )
  est.train(guide_models.train_input_fn, steps=1)
  _prune_model_dir(est_tf2)
  _relativize_state_file(est_tf2)


def make_ranking(out: str) -> None:
  """Synthetic ranking data and an est-tf1 dir of the ranking model."""
  params = ranking_model.RankingParams()
  data_dir = os.path.join(out, "ranking")
  os.makedirs(data_dir)
  train = ranking_data.synthesize(RANKING_TRAIN_ROWS, params, seed=SEED)
  ranking_data.write_csv(train, os.path.join(data_dir, "train.csv"))
  ranking_data.write_csv(
    ranking_data.synthesize(RANKING_EVAL_ROWS, params, seed=SEED + 1),
    os.path.join(data_dir, "eval.csv"),
  )

  model_dir = os.path.join(out, "est-tf1-ranking")
  config = tf.estimator.RunConfig(tf_random_seed=SEED, keep_checkpoint_max=1)
  est = ranking_model.estimator(model_dir, params, config)
  est.train(
    ranking_data.input_fn(train, batch_size=64, shuffle=True, seed=SEED),
    steps=RANKING_STEPS,
  )
  _prune_model_dir(model_dir)


def _report(built: str, existing: str) -> int:
  """Logs files that differ between two trees; returns how many."""
  changed = 0
  for root, _, files in os.walk(built):
    for name in sorted(files):
      path = os.path.join(root, name)
      rel = os.path.relpath(path, built)
      old = os.path.join(existing, rel)
      if not os.path.exists(old):
        state = "new"
      elif filecmp.cmp(path, old, shallow=False):
        continue
      else:
        state = "changed"
      changed += 1
      print(f"{state:8s} {rel} ({os.path.getsize(path)} bytes)")
  return changed


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  testdata_dir = _TESTDATA_DIR.value or os.path.join(
    os.environ.get("BUILD_WORKSPACE_DIRECTORY", os.getcwd()), "testdata"
  )
  if not os.path.isfile(os.path.join(testdata_dir, "generate.py")):
    raise app.UsageError(
      f"`{testdata_dir}` is not the testdata/ directory; pass --testdata_dir."
    )

  with tempfile.TemporaryDirectory() as build_dir:
    make_guide_checkpoints(build_dir)
    make_guide_estimator_dirs(build_dir)
    make_ranking(build_dir)
    manifest = {
      name: fixtures.checkpoint_manifest(os.path.join(build_dir, rel))
      for name, rel in fixtures.GOLDENS.items()
    }
    with open(os.path.join(build_dir, fixtures.MANIFEST), "w") as f:
      json.dump(manifest, f, indent=1, sort_keys=True)
      f.write("\n")

    changed = _report(build_dir, testdata_dir)
    if not _WRITE.value:
      print(
        f"Dry run: {changed} file(s) would change. Pass --write to "
        "replace them."
      )
      return
    for name in os.listdir(build_dir):
      dst = os.path.join(testdata_dir, name)
      if os.path.isdir(dst):
        shutil.rmtree(dst)
      shutil.move(os.path.join(build_dir, name), dst)
    logging.info("Wrote %d file(s) to %s", changed, testdata_dir)


if __name__ == "__main__":
  app.run(main)
