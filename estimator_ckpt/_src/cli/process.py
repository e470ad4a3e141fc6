"""What every absl binary of this package does around its own work.

Not public API.
"""

import os
import sys


def use_callers_directory() -> None:
  """Resolves relative paths against the user's directory.

  `bazel run` starts binaries in their runfiles; `BUILD_WORKING_DIRECTORY` is
  where the user ran it. Run directly, the directory stays as it is.
  """
  os.chdir(os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()))


def print_result(text: str) -> None:
  """Prints `text`; a reader that stops early (`... | head`) is no error."""
  try:
    print(text)
  except BrokenPipeError:
    # Python would report the pipe again when it flushes stdout at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
