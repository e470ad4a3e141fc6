"""The mapped shared objects, read again only when one was loaded (issue 20).

The uploader asks for TensorFlow's libraries several times a save; a read
of `/proc/self/maps` costs about 2 ms of CPU in a TensorFlow process. A
real shared object is loaded here (a copy of the C math library under a
new name, so the loader cannot take it for the one already loaded) and
must be seen at once.
"""

import ctypes
import os
import shutil
import sys
from unittest import mock

from absl.testing import absltest

from estimator_ckpt._src.storage import loaded_libraries


def _loadable_library() -> str:
  """A shared object this process mapped, to copy (the C math library)."""
  mapped = loaded_libraries.mapped_files()
  for name in ("libm.so.6", "libc.so.6"):
    if name in mapped:
      return mapped[name]
  raise AssertionError(f"No C library among {sorted(mapped)}")


@absltest.skipUnless(sys.platform.startswith("linux"), "/proc/self/maps")
class LoadedLibrariesTest(absltest.TestCase):
  def test_read_once_until_an_object_is_loaded(self):
    copy = os.path.join(
      self.create_tempdir().full_path, "libestimator_ckpt_loaded_test.so"
    )
    shutil.copyfile(_loadable_library(), copy)  # Read the maps once.
    read = mock.Mock(wraps=loaded_libraries._read_maps)
    with mock.patch.object(loaded_libraries, "_read_maps", read):
      before = loaded_libraries.load_counts()
      first = loaded_libraries.mapped_files()
      self.assertEqual(loaded_libraries.mapped_files(), first)
      reads_before_loading = read.call_count
      ctypes.CDLL(copy)
      after = loaded_libraries.load_counts()
      seen = loaded_libraries.mapped_files()
    assert before is not None and after is not None  # glibc counts.
    self.assertGreater(after[0], before[0])
    self.assertEqual(reads_before_loading, 0)
    self.assertEqual(read.call_count, 1)
    self.assertNotIn(os.path.basename(copy), first)
    self.assertEqual(seen[os.path.basename(copy)], copy)

  def test_read_at_every_call_where_loads_are_not_counted(self):
    read = mock.Mock(wraps=loaded_libraries._read_maps)
    with (
      mock.patch.object(loaded_libraries, "_DL_ITERATE_PHDR", None),
      mock.patch.object(loaded_libraries, "_read_maps", read),
    ):
      self.assertIsNone(loaded_libraries.load_counts())
      first = loaded_libraries.mapped_files()
      second = loaded_libraries.mapped_files()
    self.assertEqual(read.call_count, 2)
    self.assertEqual(first, second)
    self.assertIn(os.path.basename(_loadable_library()), first)

  def test_a_caller_cannot_change_what_is_kept(self):
    mapped = loaded_libraries.mapped_files()
    mapped.clear()
    self.assertNotEqual(loaded_libraries.mapped_files(), {})


if __name__ == "__main__":
  absltest.main()
