r"""Runs a module as `__main__` with tensorflow-io's file systems registered.

Not public API: how the remote benchmark runs its plain-TensorFlow baseline
on S3 (the estimator_ckpt tools import tensorflow-io themselves):

  python -m benchmarks.with_tensorflow_io benchmarks.gfile_copy \
    /local/model_dir s3://bucket/model_dir

The exit status is the module's. It leaves with `os._exit` after flushing
stdout and stderr: a process that loaded tensorflow-io 0.36.0 otherwise
aborts while exiting (`pure virtual method called`, SIGABRT, whatever it did;
tensorflow/io#1912).
"""

import os
import runpy
import sys
import traceback


def main() -> None:
  if len(sys.argv) < 2:
    sys.stderr.write(
      "usage: python -m benchmarks.with_tensorflow_io MODULE [ARGS...]\n"
    )
    os._exit(2)
  module = sys.argv[1]
  sys.argv = [module] + sys.argv[2:]
  status = 0
  try:
    import tensorflow_io  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import

    runpy.run_module(module, run_name="__main__", alter_sys=True)
  except SystemExit as e:  # absl's app.run ends with sys.exit.
    if isinstance(e.code, int):
      status = e.code
    elif e.code is not None:
      sys.stderr.write(f"{e.code}\n")
      status = 1
  except BaseException:  # pylint: disable=broad-except  (reported, exit 1)
    traceback.print_exc()
    status = 1
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)


if __name__ == "__main__":
  main()
