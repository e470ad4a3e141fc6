"""What TensorFlow 2.15 itself does with the inputs faults_test covers.

Records why the tools check everything themselves: TensorFlow kills the whole
process on some damaged indexes. Each case runs TensorFlow in a subprocess.
"""

import os
import signal
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized

import estimator_ckpt
from estimator_ckpt import errors

from tests import tool_fixtures

_READ_WITH_TENSORFLOW = (
  "import sys, tensorflow as tf\n"
  "reader = tf.train.load_checkpoint(sys.argv[1])\n"
  "for key in reader.get_variable_to_shape_map():\n"
  "  reader.get_tensor(key)\n"
)


class TensorflowFaultsTest(parameterized.TestCase):
  @parameterized.named_parameters(
    (
      "negative_dimension",
      lambda prefix: tool_fixtures.set_dimension(
        prefix, b"hidden/bias", 0, -16
      ),
    ),
    (
      "unparseable_entry",
      lambda prefix: tool_fixtures.replace_entry_bytes(
        prefix, b"hidden/bias", b"\xff\xff\xff\xff"
      ),
    ),
  )
  def test_tensorflow_aborts_where_we_raise(self, damage):
    model_dir = tool_fixtures.copy_golden(
      "est-tf1-ranking", self.create_tempdir().full_path
    )
    damage(os.path.join(model_dir, "model.ckpt-20"))
    result = subprocess.run(
      [
        sys.executable,
        "-c",
        _READ_WITH_TENSORFLOW,
        os.path.join(model_dir, "model.ckpt-20"),
      ],
      capture_output=True,
      text=True,
      check=False,
      timeout=300,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},
    )
    self.assertEqual(result.returncode, -signal.SIGABRT, result.stderr[-2000:])
    with self.assertRaisesRegex(errors.CorruptCheckpointError, "hidden/bias"):
      estimator_ckpt.verify(model_dir)


if __name__ == "__main__":
  absltest.main()
