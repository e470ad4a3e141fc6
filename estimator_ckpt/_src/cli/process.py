"""What every absl binary of this package does around its own work.

Not public API.
"""

import os
import sys
import traceback
from typing import Callable, List, Sequence

from absl import app
from absl import flags


def use_callers_directory() -> None:
  """Resolves relative paths against the user's directory.

  `bazel run` starts binaries in their runfiles; `BUILD_WORKING_DIRECTORY` is
  where the user ran it. Run directly, the directory stays as it is.
  """
  os.chdir(os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()))


def positional_arguments(
  argv: Sequence[str], count: int, what: str
) -> List[str]:
  """The binary's positional arguments, after `use_callers_directory`.

  Args:
    argv: As `main` gets it (the program name first).
    count: How many the binary takes.
    what: Them, for the usage error ("one checkpoint (model dir or prefix)").

  Raises:
    app.UsageError: Another number of arguments.
  """
  use_callers_directory()
  if len(argv) != count + 1:
    raise app.UsageError(f"Pass {what}; got {len(argv) - 1}.")
  return list(argv[1:])


def print_result(text: str) -> None:
  """Prints `text`; a reader that stops early (`... | head`) is no error."""
  try:
    print(text)
  except BrokenPipeError:
    # Python would report the pipe again when it flushes stdout at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run_app(main: Callable[[List[str]], None]) -> None:
  """`app.run(main)`, exiting cleanly also after tensorflow-io was loaded.

  A process that loaded tensorflow-io 0.36.0 (the tools import it for
  `s3://` and other URLs it serves) aborts while Python exits (`pure virtual
  method called`, SIGABRT; tensorflow/io#1912), whatever it did. Then the
  binary closes what Python's exit would have closed (Estimator's event
  writers, whose objects are uploaded on close), flushes its output and
  leaves with its own exit status at once (130 after Ctrl-C, as a shell
  reports it).

  Run through a console script (`estimator-ckpt-convert`), whose generated
  `__main__` has no docstring and defines no flags, `--help` still shows the
  binary's usage and flags, as `python -m estimator_ckpt.convert_main --help`
  does (`_help_as_main`).
  """
  _help_as_main(main.__module__)
  try:
    app.run(main)
  except SystemExit as e:
    if "tensorflow_io" not in sys.modules:
      raise
    if isinstance(e.code, int) or e.code is None:
      status = e.code or 0
    else:
      sys.stderr.write(f"{e.code}\n")
      status = 1
  except KeyboardInterrupt:
    if "tensorflow_io" not in sys.modules:
      raise
    status = 130
  except BaseException:  # pylint: disable=broad-except  (reported, exit 1)
    if "tensorflow_io" not in sys.modules:
      raise
    traceback.print_exc()
    status = 1
  _close_event_writers()
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (BrokenPipeError, ValueError):
      pass  # The reader is gone; the status still counts.
  os._exit(status)


def _help_as_main(module_name: str) -> None:
  """Makes absl's help describe `module_name` as the main module.

  absl prints `sys.modules["__main__"].__doc__` as the usage and the key
  flags of the module named `sys.argv[0]` (absl/app.py `usage`,
  absl/flags/_flagvalues.py `main_module_help`). Run as `python -m` or as a
  script, the binary is `__main__` and both are its own; through a console
  script, `__main__` is pip's wrapper (whose docstring, if any, is the
  shell shim pip writes for long interpreter paths), so lend it the binary's
  docstring and key flags.
  """
  main_module = sys.modules.get("__main__")
  if module_name == "__main__" or main_module is None:
    return
  binary = sys.modules[module_name]
  main_module.__doc__ = binary.__doc__
  for flag in flags.FLAGS.get_key_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def _close_event_writers() -> None:
  """Flushes and closes TensorFlow's cached summary writers, if any."""
  tf = sys.modules.get("tensorflow")
  if tf is None:
    return
  try:
    tf.compat.v1.summary.FileWriterCache.clear()
  except Exception:  # pylint: disable=broad-except  (best effort at exit)
    traceback.print_exc()
