"""Child of async_kill_test: trains with async saves, pauses a background save.

`python -m tests.async_kill_child MODEL_DIR POINT STEP` trains the guide's
model with `tf2_checkpoints(async_save=True)`, saving every 2 steps, and
pauses the background save of step STEP at POINT, printing
`PAUSED <point> <prefix>` so the parent can SIGKILL it there:

* `before_write`: the snapshot is taken, nothing of the checkpoint written;
* `after_write`: its data and index (with aliases) written; no fsync, no meta;
* `before_state`: written, aliased and fsynced; the state file not updated;
* `after_state`: the state file names it; retention not yet applied.

With POINT `none` it trains 1 step (the parent's resume check) and prints
`STEP <global step>`.
"""

import sys
import threading

import tensorflow as tf

from estimator_ckpt._src import async_save
from estimator_ckpt._src import durable
from estimator_ckpt._src import migrate

from examples.guide import models as guide_models


def _pause(point: str, prefix: str) -> None:
  print(f"PAUSED {point} {prefix}", flush=True)
  threading.Event().wait()  # Until SIGKILL.


def _patch(point: str, step: int) -> None:
  suffix = f"model.ckpt-{step}"
  write = async_save.AsyncParts.write
  fsync_checkpoint = durable.fsync_checkpoint
  fsync_state = durable.fsync_state

  def patched_write(parts, sess, saver, prefix, *args):
    if prefix.endswith(suffix) and point == "before_write":
      _pause(point, prefix)
    aliased = write(parts, sess, saver, prefix, *args)
    if prefix.endswith(suffix) and point == "after_write":
      _pause(point, prefix)
    return aliased

  def patched_fsync_checkpoint(prefix):
    fsync_checkpoint(prefix)
    if prefix.endswith(suffix) and point == "before_state":
      _pause(point, prefix)

  def patched_fsync_state(save_dir, latest_filename):
    fsync_state(save_dir, latest_filename)
    latest = tf.train.latest_checkpoint(save_dir)
    if latest and latest.endswith(suffix) and point == "after_state":
      _pause(point, latest)

  async_save.AsyncParts.write = patched_write
  # tf2_saver.py and async_save.py call these through the `durable` module.
  durable.fsync_checkpoint = patched_fsync_checkpoint
  durable.fsync_state = patched_fsync_state


def main(argv):
  model_dir, point, step = argv[1], argv[2], int(argv[3])
  if point != "none":
    _patch(point, step)
  est = tf.estimator.Estimator(
    migrate.tf2_checkpoints(guide_models.model_fn_tf1_ckpt, async_save=True),
    model_dir,
    config=tf.estimator.RunConfig(save_checkpoints_steps=2),
  )
  steps = 1 if point == "none" else 2 * step
  est.train(lambda: guide_models.train_input_fn().repeat(), steps=steps)
  print(f"STEP {est.get_variable_value('global_step')}", flush=True)


if __name__ == "__main__":
  main(sys.argv)
