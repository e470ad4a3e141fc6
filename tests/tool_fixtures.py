"""Fixtures for the checkpoint-tool tests that need no TensorFlow.

Not public API (a `testonly` library). Copies of goldens, digests of whole
directories (to prove a source stayed untouched), ways to damage a checkpoint
precisely (rewrite index entries, write an index table with keys in any
order, flip or cut bytes), and ways to run the binaries in-process and as a
subprocess.
"""

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
from typing import Callable, Dict, Iterable, List, Tuple

from absl import flags
from absl.testing import flagsaver

from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import table
from estimator_ckpt._src.format import varint

# Hand-made index records spell out LevelDB varints.
_varint = varint.encode_varint

TESTDATA_DIR = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testdata"
)

# Golden checkpoints (as tests/fixtures.py names them): path under testdata/.
GOLDENS = {
  "tf1-ckpt": "tf1-ckpt/tf1-ckpt",
  "tf2-ckpt": "tf2-ckpt/tf2-ckpt-1",
  "est-tf1": "est-tf1",
  "est-tf2": "est-tf2",
  "est-tf1-ranking": "est-tf1-ranking",
}
TF1_GOLDENS = ("tf1-ckpt", "est-tf1", "est-tf1-ranking")
TF2_GOLDENS = ("tf2-ckpt", "est-tf2")


def golden_path(name: str) -> str:
  return os.path.join(TESTDATA_DIR, GOLDENS[name])


def copy_golden(name: str, parent: str) -> str:
  """Copies a golden's directory under `parent`.

  Returns:
    The same kind of path (prefix or model dir) as `golden_path`.
  """
  relative = GOLDENS[name]
  directory = relative.split("/")[0]
  shutil.copytree(
    os.path.join(TESTDATA_DIR, directory), os.path.join(parent, directory)
  )
  return os.path.join(parent, relative)


def tree_digest(root: str) -> Dict[str, Tuple[str, int]]:
  """SHA-256 and mode of every file under `root`, by relative path."""
  digests = {}
  for directory, _, names in os.walk(root):
    for name in names:
      path = os.path.join(directory, name)
      with open(path, "rb") as f:
        digests[os.path.relpath(path, root)] = (
          hashlib.sha256(f.read()).hexdigest(),
          os.stat(path).st_mode,
        )
  return digests


def flip_byte(path: str, offset: int) -> None:
  """Inverts one byte; a negative offset counts from the end."""
  with open(path, "r+b") as f:
    size = os.fstat(f.fileno()).st_size
    f.seek(offset % size)
    byte = f.read(1)
    f.seek(offset % size)
    f.write(bytes([byte[0] ^ 0xFF]))


def truncate(path: str, size: int) -> None:
  with open(path, "r+b") as f:
    f.truncate(size)


def entries(prefix: str) -> Dict[bytes, protos.BundleEntryProto]:
  """All entries of an index, the header under key b''."""
  with open(bundle.index_filename(prefix), "rb") as f:
    items = table.decode_table(prefix, f.read())
  out = {}
  for key, value in items:
    message = (
      protos.BundleHeaderProto()
      if key == bundle.HEADER_KEY
      else protos.BundleEntryProto()
    )
    message.ParseFromString(value)
    out[key] = message
  return out


def write_raw_index(prefix: str, items: Iterable[Tuple[bytes, bytes]]) -> None:
  """Writes an index table with items in the given order, unchecked.

  `table.encode_table` refuses unsorted or duplicate keys; this writes what a
  buggy writer would: one data block, no prefix sharing, one restart point,
  valid checksums (table format: see bundle.py).
  """
  out = bytearray()

  def write_block(block: bytes, num_restarts: int = 1) -> bytes:
    raw = (
      block
      + b"\x00\x00\x00\x00" * num_restarts
      + (num_restarts.to_bytes(4, "little"))
    )
    handle = _varint(len(out)) + _varint(len(raw))
    out.extend(raw + b"\x00")
    out.extend(crc32c.mask(crc32c.crc32c(raw + b"\x00")).to_bytes(4, "little"))
    return handle

  items = list(items)
  data = b"".join(
    _varint(0) + _varint(len(key)) + _varint(len(value)) + key + value
    for key, value in items
  )
  data_handle = write_block(data)
  meta_handle = write_block(b"")
  last_key = max(key for key, _ in items)
  index_handle = write_block(
    _varint(0)
    + _varint(len(last_key) + 1)
    + _varint(len(data_handle))
    + last_key
    + b"\xff"
    + data_handle
  )
  footer = (meta_handle + index_handle).ljust(40, b"\x00")
  out.extend(footer + (0xDB4775248B80FB57).to_bytes(8, "little"))
  with open(bundle.index_filename(prefix), "wb") as f:
    f.write(out)


def rewrite_index(
  prefix: str, edit: Callable[[Dict[bytes, protos.BundleEntryProto]], None]
) -> None:
  """Edits the parsed entries (header under b'') and rewrites the index."""
  items = entries(prefix)
  edit(items)
  header = items.pop(bundle.HEADER_KEY, None)
  serialized = sorted(
    (key, entry.SerializeToString()) for key, entry in items.items()
  )
  if header is not None:
    serialized.insert(0, (bundle.HEADER_KEY, header.SerializeToString()))
  with open(bundle.index_filename(prefix), "wb") as f:
    f.write(table.encode_table(serialized))


def binary_command(name: str) -> List[str]:
  """How to run binary `//estimator_ckpt:<name>` as a user would.

  Under Bazel, the built binary from the test's runfiles (`data =
  ["//estimator_ckpt:<name>"]`); run directly with Python, the module.
  """
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  built = os.path.join(root, "estimator_ckpt", name)
  if os.path.isfile(built) and os.access(built, os.X_OK):
    return [built]
  if "TEST_SRCDIR" in os.environ:  # Under Bazel: the binary must be there.
    raise FileNotFoundError(f"{built}: add //estimator_ckpt:{name} to data.")
  return [sys.executable, "-m", f"estimator_ckpt.{name}_main"]


def run_main(
  main: Callable[[List[str]], None], argv: List[str]
) -> Tuple[str, str]:
  """Runs a binary's `main` in-process with flags parsed from `argv`.

  Returns:
    (stdout, stderr). Exceptions (app.UsageError, SystemExit) propagate.
  """
  with flagsaver.flagsaver():
    remaining = flags.FLAGS(argv)
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
      main(remaining)
  return stdout.getvalue(), stderr.getvalue()


def set_dimension(prefix: str, key: bytes, axis: int, size: int) -> None:
  """Rewrites one entry's shape, e.g. to a negative dimension."""

  def edit(items):
    items[key].shape.dim[axis].size = size

  rewrite_index(prefix, edit)


def replace_entry_bytes(prefix: str, key: bytes, value: bytes) -> None:
  """Replaces one entry's serialized proto, e.g. with unparseable bytes."""
  items = [
    (k, value if k == key else entry.SerializeToString())
    for k, entry in sorted(entries(prefix).items())
  ]
  write_raw_index(prefix, items)


def free_ports(count: int) -> List[int]:
  """`count` distinct free ports on 127.0.0.1, all held until each is chosen.

  Ports picked one at a time can repeat (each is free again once its probe
  closes), so a cluster of them could be given one port twice.
  """
  with contextlib.ExitStack() as stack:
    probes = [stack.enter_context(socket.socket()) for _ in range(count)]
    for probe in probes:
      probe.bind(("127.0.0.1", 0))
    return [probe.getsockname()[1] for probe in probes]


def dead_pid() -> int:
  """The pid of a process that has exited (until the kernel reuses it)."""
  child = subprocess.Popen([sys.executable, "-c", "pass"])
  child.wait()
  return child.pid


class Chdir:
  """Changes the working directory for a block (Python 3.11's contextlib)."""

  def __init__(self, path: str):
    self._path = path
    self._old = ""

  def __enter__(self):
    self._old = os.getcwd()
    os.chdir(self._path)

  def __exit__(self, *exc_info):
    os.chdir(self._old)


def refusing_o_direct(real_open):
  """os.open as on a file system without O_DIRECT (tmpfs before Linux 6.6).

  Like Linux, it creates the file before it refuses the flag.
  """

  def refusing_open(path, flags, *args, **kwargs):
    if flags & os.O_DIRECT:
      os.close(real_open(path, flags & ~os.O_DIRECT, *args, **kwargs))
      raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    return real_open(path, flags, *args, **kwargs)

  return refusing_open


def refusing_o_direct_writes(real_pwrite):
  """os.pwrite as on a file system that opens but cannot write O_DIRECT."""

  def refusing_pwrite(fd, data, offset):
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
      raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    return real_pwrite(fd, data, offset)

  return refusing_pwrite
