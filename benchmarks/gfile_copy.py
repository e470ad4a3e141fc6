"""Copies every file of a directory with `tf.io.gfile.copy`.

Not public API: the baseline of //benchmarks:remote_benchmark, run the way
the convert binary is run there, in its own process:

  python -m benchmarks.with_tensorflow_io benchmarks.gfile_copy SRC DST

(plain TensorFlow has no `s3://`; the estimator_ckpt tools import
tensorflow-io themselves).

Either directory may be a URL (`s3://...`); DST is created.
"""

import os
from typing import Sequence

from absl import app
import tensorflow as tf


def copy_dir(src: str, dst: str) -> None:
  """Copies the files directly in `src` into `dst`, one `gfile.copy` each."""
  tf.io.gfile.makedirs(dst)
  for listed in sorted(tf.io.gfile.listdir(src)):
    name = listed.rstrip("/")
    if not tf.io.gfile.isdir(os.path.join(src, name)):
      tf.io.gfile.copy(os.path.join(src, name), os.path.join(dst, name))


def main(argv: Sequence[str]) -> None:
  if len(argv) != 3:
    raise app.UsageError("usage: gfile_copy SRC_DIR DST_DIR")
  copy_dir(argv[1], argv[2])


if __name__ == "__main__":
  app.run(main)
