"""Errors raised by estimator_ckpt.

Every error subclasses `Error`, so `except estimator_ckpt.errors.Error` catches
all of them; each also subclasses the builtin it refines, so code that already
catches `ValueError` or `FileNotFoundError` keeps working. Messages say what
failed (with the path or key), why, and what to do.
"""

import os
from typing import Iterable, Optional

# How many names an error message lists before it says "and N more".
_MAX_LISTED_NAMES = 10


class Error(Exception):
  """Base class of every error raised by estimator_ckpt."""


class CheckpointNotFoundError(Error, FileNotFoundError):
  """A path holds no checkpoint (no such file, or no `checkpoint` state)."""


class IncompatibleCheckpointError(Error, ValueError):
  """A checkpoint does not hold what the model needs.

  Raised, for example, when the model's variables match neither the TF1 names
  nor the TF2 keys stored in a checkpoint.
  """


class ShapeMismatchError(Error, ValueError):
  """A variable and its checkpoint tensor differ in shape or dtype."""


class CorruptCheckpointError(Error, ValueError):
  """A checkpoint file is damaged: bad index, checksum, or layout."""


class KeyEncodingError(Error, ValueError):
  """A TF2 object-based key or escaped name cannot be decoded."""


def format_list(
  items: Iterable[str], *, limit: int = _MAX_LISTED_NAMES, separator: str = ", "
) -> str:
  """The first `limit` items, then "... and M more": the one list writer.

  Every message that lists names or problems goes through here, so lists
  read the same everywhere and never grow with the checkpoint.

  Args:
    items: The items, in the order to show them.
    limit: How many to show before "... and M more".
    separator: Between items; a newline and two spaces list one item per
      indented line.

  Returns:
    A string like "a, b, ... and 3 more".
  """
  items = list(items)
  shown = separator.join(items[:limit])
  if len(items) > limit:
    shown += f"{separator}... and {len(items) - limit} more"
  return shown


def format_names(names: Iterable[str], limit: int = _MAX_LISTED_NAMES) -> str:
  """Formats names sorted, de-duplicated and quoted, for error messages.

  Args:
    names: The names to list; sorted and de-duplicated here.
    limit: How many to show before "... and N more".

  Returns:
    A string like "`a`, `b`, ... and 3 more".
  """
  return format_list((f"`{name}`" for name in sorted(set(names))), limit=limit)


class VariableNotFoundError(Error, KeyError):
  """A checkpoint has no variable (or key) by the requested name."""

  def __str__(self) -> str:
    # KeyError quotes its message; this message is prose.
    return str(self.args[0]) if self.args else ""


class DestinationExistsError(Error, FileExistsError):
  """A conversion would overwrite existing files or write into its source."""


class CheckpointsDifferError(Error, ValueError):
  """Two checkpoints hold different variables or values.

  Attributes:
    differences: One line per difference, sorted by variable name.
  """

  def __init__(self, message: str, differences: Iterable[str] = ()):
    super().__init__(message)
    self.differences = list(differences)


class VocabularyChangedError(Error, ValueError):
  """A warm-started variable is indexed by a vocabulary that changed.

  Copying it row for row would misalign it; the message names the variable,
  both vocabularies, the first difference and the `VocabInfo` to pass.
  """


class InvalidArgumentError(Error, ValueError):
  """An argument has a value the function does not accept."""


class ArgumentTypeError(Error, TypeError):
  """An argument has a type the function does not accept."""


class InvalidRenameError(Error, ValueError):
  """A rename spec is malformed, or one of its rules matched nothing."""


class MalformedDataError(Error, ValueError):
  """A row of a data file does not follow its schema (file, line, what)."""


class DestinationLockedError(Error, BlockingIOError):
  """Another process is writing the same destination."""


class CheckpointIOError(Error, OSError):
  """The file system failed (permissions, no space, ...) on a user's path.

  Attributes:
    errno: The operating system's error number, as for any `OSError`.
    strerror: Its text.
    filename: The user's path the operation was for (a checkpoint prefix,
      file or destination directory; never a hidden staging name).
  """

  def __init__(
    self,
    message: str,
    *,
    errno: Optional[int] = None,
    filename: Optional[str] = None,
  ):
    super().__init__(message)
    self.errno = errno
    self.strerror = os.strerror(errno) if errno is not None else None
    self.filename = filename

  def __str__(self) -> str:
    # OSError would prefix "[Errno N]" and append the filename; the message
    # already says both in prose.
    return str(self.args[0]) if self.args else ""


class FileSystemNotSupportedError(Error, ValueError):
  """A path's URL scheme has no file system here; the message says the fix."""


class AsyncSaveError(Error, RuntimeError):
  """A checkpoint saved in the background (`async_save=True`) failed.

  Raised in the training thread at the first step after the failure (with
  `AsyncCheckpointSaverHook`), at the next save, or at the end of training,
  chained (`__cause__`) to the failure. The checkpoint state file still names
  the previous checkpoint, which is whole.

  Attributes:
    checkpoint: The prefix of the checkpoint that failed.
    step: Its step, or None.
  """

  def __init__(self, message: str, *, checkpoint: str, step: Optional[int]):
    super().__init__(message)
    self.checkpoint = checkpoint
    self.step = step
