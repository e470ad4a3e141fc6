"""Shared libraries found once for all, the uploader's lookup (issue 20).

The uploader looks for TensorFlow's libraries several times a save; a read
of `/proc/self/maps` costs about 1.9 ms of CPU in a TensorFlow process. A
real shared object is loaded here (a copy of the C math library under a
new name, so the loader cannot take it for the one already loaded) and
must be found at the first call after it was loaded.
"""

import ctypes
import os
import shutil
import sys
from unittest import mock

from absl.testing import absltest

from estimator_ckpt._src.storage import loaded_libraries

_MATH = "libm.so.6"


@absltest.skipUnless(sys.platform.startswith("linux"), "/proc/self/maps")
class LoadedLibrariesTest(absltest.TestCase):
  def _counted_reads(self) -> mock.Mock:
    read = mock.Mock(wraps=loaded_libraries._read_maps)
    patch = mock.patch.object(loaded_libraries, "_read_maps", read)
    patch.start()
    self.addCleanup(patch.stop)
    return read

  def test_kept_once_all_are_found(self):
    read = self._counted_reads()
    found = loaded_libraries.find(["libc.so.6"])
    self.assertTrue(found["libc.so.6"].startswith("/"))
    for _ in range(3):
      self.assertEqual(loaded_libraries.find(["libc.so.6"]), found)
    self.assertLessEqual(
      read.call_count, 1
    )  # None if an earlier test found it.

  def test_read_at_each_call_until_loaded_then_kept(self):
    math = loaded_libraries.find([_MATH]).get(_MATH)
    if math is None:
      self.skipTest(f"{_MATH} is not mapped here")
    name = f"libestimator_ckpt_{self.id().rsplit('.', 1)[-1]}.so"
    copy = os.path.join(self.create_tempdir().full_path, name)
    shutil.copyfile(math, copy)
    read = self._counted_reads()
    self.assertEqual(loaded_libraries.find([_MATH, name]), {_MATH: math})
    self.assertEqual(loaded_libraries.find([_MATH, name]), {_MATH: math})
    self.assertEqual(read.call_count, 2)  # Not all found: read each time.
    ctypes.CDLL(copy)
    expected = {_MATH: math, name: copy}
    self.assertEqual(loaded_libraries.find([_MATH, name]), expected)
    self.assertEqual(loaded_libraries.find([_MATH, name]), expected)
    self.assertEqual(read.call_count, 3)  # Found: kept.

  def test_a_caller_cannot_change_what_is_kept(self):
    found = loaded_libraries.find(["libc.so.6"])
    found.clear()
    self.assertIn("libc.so.6", loaded_libraries.find(["libc.so.6"]))


if __name__ == "__main__":
  absltest.main()
