"""The storage seam's contract, run against every implementation.

Each test runs on a local temporary directory (`LocalStorage`), on
TensorFlow's in-process `ram://` file system (`GfileStorage`, which behaves
like an object store to `tf.io.gfile`) and on a `file://` URL
(`FileUrlStorage`). A new storage joins by adding its root to `_ROOTS` and
its capabilities to `_CAPABILITIES`; the commit protocol and the one-writer
lock then run on it through `test_commit_*` and `test_lock_*`.
"""

import errno
import os
import secrets

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src import atomic
from estimator_ckpt._src import destination_lock
from estimator_ckpt._src.format import state_file
from estimator_ckpt._src.storage import base
from estimator_ckpt._src.storage import gfile
from estimator_ckpt._src.storage import local
from estimator_ckpt._src.storage import registry
from estimator_ckpt._src.storage import transfer

_ROOTS = ("local", "ram", "file_url")
# (atomic_rename, exclusive_create, durable_fsync, directories_are_prefixes)
_CAPABILITIES = {
  "local": (True, True, True, False, True),
  "ram": (False, False, False, True, False),
  "file_url": (True, True, False, False, False),
}
_CLASSES = {
  "local": local.LocalStorage,
  "ram": gfile.GfileStorage,
  "file_url": gfile.FileUrlStorage,
}


class StorageContractTest(parameterized.TestCase, tf.test.TestCase):
  def _root(self, kind: str) -> str:
    if kind == "ram":
      root = f"ram://storage-{secrets.token_hex(4)}/root"
      tf.io.gfile.makedirs(root)
      return root
    path = self.create_tempdir().full_path
    return f"file://{path}" if kind == "file_url" else path

  def _store(self, kind: str):
    root = self._root(kind)
    return registry.for_path(root), root

  def _read(self, store: base.Storage, path: str) -> bytes:
    with store.open_regular(path, "test file") as file:
      return file.pread(file.size, 0)

  @parameterized.parameters(*_ROOTS)
  def test_is_chosen_once_per_scheme_and_declares_its_capabilities(self, kind):
    store, root = self._store(kind)
    self.assertIsInstance(store, _CLASSES[kind])
    self.assertIs(registry.for_path(store.join(root, "other")), store)
    caps = store.capabilities
    self.assertEqual(
      (
        caps.atomic_rename,
        caps.exclusive_create,
        caps.durable_fsync,
        caps.directories_are_prefixes,
        caps.os_paths,
      ),
      _CAPABILITIES[kind],
    )

  @parameterized.parameters(*_ROOTS)
  def test_write_file_then_read_and_ranged_read(self, kind):
    store, root = self._store(kind)
    path = store.join(root, "data")
    data = bytes(range(256)) * 3
    store.write_file(path, data)
    with store.open_regular(path, "test file") as file:
      self.assertEqual(file.size, len(data))
      self.assertEqual(file.pread(7, 300), data[300:307])
      self.assertEqual(file.pread(0, len(data)), b"")
      self.assertEqual(file.pread(len(data), 0), data)
      with self.assertRaisesRegex(
        errors.CorruptCheckpointError, "ends at byte 768, before the 10 bytes"
      ):
        file.pread(10, len(data) - 5)
    # No temporary names are left beside it.
    self.assertEqual(store.listdir(root), ["data"])

  @parameterized.parameters(*_ROOTS)
  def test_streamed_write(self, kind):
    store, root = self._store(kind)
    path = store.join(root, "streamed")
    with store.open_write(path, 9) as writer:
      writer.write(b"abc")
      writer.write(b"defghi")
    self.assertEqual(self._read(store, path), b"abcdefghi")

  @parameterized.parameters(*_ROOTS)
  def test_fsync_dir_syncs_where_durable(self, kind):
    store, root = self._store(kind)
    store.write_file(store.join(root, "f"), b"x")
    store.fsync_dir(root)
    missing = store.join(root, "missing")
    if store.capabilities.durable_fsync:  # A real fsync: it needs the dir.
      with self.assertRaises(FileNotFoundError):
        store.fsync_dir(missing)
    else:  # Nothing to sync: objects are durable once written.
      store.fsync_dir(missing)
      self.assertFalse(store.exists(missing))

  @parameterized.parameters(*_ROOTS)
  def test_put_stat_list_and_remove(self, kind):
    store, root = self._store(kind)
    directory = store.join(root, "dir")
    store.makedirs(store.join(directory, "sub"))
    store.makedirs(directory)  # Exists: nothing happens.
    store.put(store.join(directory, "a"), b"12345")
    self.assertEqual(sorted(store.listdir(directory)), ["a", "sub"])
    info = store.stat(store.join(directory, "a"))
    self.assertEqual((info.size, info.is_regular, info.is_dir), (5, 1, 0))
    self.assertTrue(store.stat(store.join(directory, "sub")).is_dir)
    self.assertIsNone(store.stat(store.join(directory, "missing")))
    self.assertTrue(store.exists(store.join(directory, "a")))
    self.assertTrue(store.lexists(store.join(directory, "a")))
    self.assertTrue(store.isdir(directory))
    self.assertFalse(store.isdir(store.join(directory, "a")))
    self.assertEqual(store.listdir(store.join(root, "missing")), [])
    with self.assertRaises((OSError, tf.errors.OpError)):  # Its own error.
      store.listdir(store.join(root, "missing"), strict=True)
    store.remove(store.join(directory, "a"))
    store.remove(store.join(directory, "a"))  # Gone already: nothing.
    self.assertFalse(store.exists(store.join(directory, "a")))
    self.assertEqual(store.listdir(directory), ["sub"])
    store.rmtree(directory)
    self.assertFalse(store.exists(directory))

  @parameterized.parameters(*_ROOTS)
  def test_open_regular_refuses_what_is_not_a_file(self, kind):
    store, root = self._store(kind)
    store.makedirs(store.join(root, "dir"))
    with self.assertRaisesRegex(
      errors.CorruptCheckpointError, "is a directory, not a regular file"
    ):
      with store.open_regular(store.join(root, "dir"), "checkpoint index"):
        pass
    with self.assertRaises(FileNotFoundError):
      with store.open_regular(store.join(root, "missing"), "checkpoint index"):
        pass

  @parameterized.parameters(*_ROOTS)
  def test_rename_replaces_the_target(self, kind):
    store, root = self._store(kind)
    old, new = store.join(root, "old"), store.join(root, "new")
    store.write_file(new, b"replaced")
    store.write_file(old, b"the new bytes")
    store.rename(old, new)
    self.assertEqual(self._read(store, new), b"the new bytes")
    self.assertFalse(store.exists(old))

  @parameterized.parameters(*_ROOTS)
  def test_exclusive_create_where_declared(self, kind):
    store, root = self._store(kind)
    path = store.join(root, "lock")
    if not store.capabilities.exclusive_create:
      with self.assertRaises(NotImplementedError):
        store.create_exclusive(path, b"first")
      return
    self.assertTrue(store.create_exclusive(path, b"first"))
    self.assertFalse(store.create_exclusive(path, b"second"))
    self.assertEqual(self._read(store, path), b"first")
    self.assertEqual(store.listdir(root), ["lock"])  # No staged names left.

  @parameterized.parameters(*_ROOTS)
  def test_lock_admits_one_writer(self, kind):
    store, root = self._store(kind)
    dst = store.join(root, "out")
    with destination_lock.hold(dst):
      with self.assertRaisesRegex(
        errors.DestinationLockedError, f"process {os.getpid()} on "
      ):
        with destination_lock.hold(dst):
          pass
    with destination_lock.hold(dst):  # Released.
      pass
    self.assertEqual(
      [n for n in store.listdir(root) if n.endswith(".convert-lock")]
      if store.capabilities.exclusive_create
      else store.listdir(destination_lock.lock_path(dst)),
      [],
    )

  @parameterized.parameters(*_ROOTS)
  def test_commit_into_new_and_existing_destinations(self, kind):
    store, root = self._store(kind)
    dst = store.join(root, "model_dir")

    def writer(data: bytes):
      def write(staging: str) -> None:
        store.write_file(
          store.join(staging, "model.ckpt-1.data-00000-of-00001"), data
        )
        store.write_file(store.join(staging, "model.ckpt-1.index"), b"i")
        store.fsync_dir(staging)

      return write

    checkpoints = [atomic.StagedCheckpoint("model.ckpt-1", 1)]
    for data in (b"first", b"second"):  # New, then replaced in place.
      atomic.write_checkpoints(dst, checkpoints, writer(data))
      self.assertEqual(
        sorted(store.listdir(dst)),
        [
          "checkpoint",
          "model.ckpt-1.data-00000-of-00001",
          "model.ckpt-1.index",
        ],
      )
      self.assertEqual(
        self._read(store, store.join(dst, "model.ckpt-1.data-00000-of-00001")),
        data,
      )
      self.assertEqual(
        state_file.read(dst).model_checkpoint_path, "model.ckpt-1"
      )
    # Nothing staged or locked is left beside it.
    self.assertEqual(store.listdir(root), ["model_dir"])

  @parameterized.parameters(*_ROOTS)
  def test_copies_within_and_across_storages(self, kind):
    store, root = self._store(kind)
    local_dir = self.create_tempdir().full_path
    data = os.urandom(3 * 4096 + 17)
    source = os.path.join(local_dir, "source")
    with open(source, "wb") as f:
      f.write(data)
    copies = [(source, store.join(root, "in"))]
    copies.append((store.join(root, "in"), store.join(root, "within")))
    copies.append((store.join(root, "within"), os.path.join(local_dir, "out")))
    for src, dst in copies:
      counted, seen = [], bytearray()
      transfer.copy_file(
        src,
        dst,
        counted.append,
        lambda seen=seen: lambda offset, view: seen.extend(view),
      )
      self.assertEqual(self._read(registry.for_path(dst), dst), data, dst)
      self.assertEqual(sum(counted), len(data))
      self.assertEqual(bytes(seen), data)

  @parameterized.parameters(*_ROOTS)
  def test_paths_and_errors(self, kind):
    store, root = self._store(kind)
    self.assertEqual(store.split(store.join(root, "x")), (root, "x"))
    self.assertEqual(store.normalize(root + "/"), root)
    self.assertEqual(store.absolute(root), root)
    failure = store.io_error(
      OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), root, "writing"
    )
    self.assertIsInstance(failure, errors.CheckpointIOError)
    self.assertIn(f"Writing `{root}` failed", str(failure))
    self.assertIn("Free space", str(failure))


class RegistryTest(absltest.TestCase):
  def test_schemes(self):
    self.assertEqual(registry.scheme("/a/b"), "")
    self.assertEqual(registry.scheme("GS://b/x"), "gs")
    self.assertIsInstance(registry.for_path("rel/path"), local.LocalStorage)
    self.assertTrue(registry.is_absolute("ram://b/x"))
    self.assertFalse(registry.is_absolute("x/y"))

  def test_unregistered_scheme_is_a_named_error(self):
    with self.assertRaisesRegex(
      errors.FileSystemNotSupportedError, r"`nosuchfs://b/x`.*install"
    ):
      registry.for_path("nosuchfs://b/x")

  def test_a_registered_storage_serves_its_scheme(self):
    made = []

    def factory(path: str) -> base.Storage:
      made.append(path)
      return local.LocalStorage()

    registry.register("teststore", factory)
    store = registry.for_path("teststore://a")
    self.assertIs(registry.for_path("teststore://b"), store)
    self.assertEqual(made, ["teststore://a"])


if __name__ == "__main__":
  absltest.main()
