"""End to end on Google Cloud Storage: fake-gcs-server, TensorFlow's client.

`setUpClass` starts fake-gcs-server behind a TLS-terminating proxy on
127.0.0.1 (benchmarks/gcs_server.py), and points TensorFlow 2.15's built-in GCS
file system at it through `https_proxy` and `CURL_CA_BUNDLE` before the
first `gs://` path is touched; every test gets its own bucket. It runs the
scenarios every store passes (tests/object_store_scenarios.py): convert in
every direction, overwrite and refusals, the one-writer lock, the binaries,
warm start and in-place resume with Estimator, and a `kill -9` at each step
of an overwrite.
"""

from absl.testing import absltest

from benchmarks import gcs_server
from tests import object_store_scenarios


class GcsTest(object_store_scenarios.Scenarios):
  # Every third step: the commit protocol is the one s3_test kills at each
  # step; here each of its phases (withdrawal, removals, data, index, state
  # file) still gets a kill, through TensorFlow's own GCS client, at a third
  # of the cost (each kill is a child importing TensorFlow).
  KILL_STEP_STRIDE = 3

  @classmethod
  def start_server(cls) -> gcs_server.GcsServer:
    server = gcs_server.GcsServer()
    server.start()
    return server


if __name__ == "__main__":
  absltest.main()
