r"""An S3 server on loopback for the S3 tests and benchmark: moto's.

Not public API. `S3Server` starts moto's S3 server (`moto[server]`, pinned in
requirements-test.txt) as a real process on 127.0.0.1 and a free port, and
gives the environment under which tensorflow-io's `s3://` file system talks
to it:

  with s3_server.S3Server() as server:
    server.create_bucket("bucket")
    os.environ.update(server.environ())
    import tensorflow_io  # Registers s3:// with TensorFlow.

tensorflow-io 0.36.0 (the release for TensorFlow 2.15) reads S3_ENDPOINT
(whose `http://` scheme turns TLS off), S3_VERIFY_SSL, AWS_REGION and the AWS
credential variables; S3_USE_HTTPS is TensorFlow's own S3 client's setting
(removed from TensorFlow in 2.6) and is set too for older stacks.

`S3Server(tls=True)` serves HTTPS, as S3 does (a certificate made at start,
as moto's `--ssl` makes one, so the client does not verify it). Over plain
HTTP the AWS SDK signs every byte it uploads (SigV4 payload hashing), which
it does not over HTTPS: measured here, an upload of 64 MiB took the client
about 0.22 s of CPU over HTTP and 0.10 to 0.17 s over HTTPS. The benchmark
uses TLS; the tests need not.

Run as a module (`python -m benchmarks.s3_server --port=N`) it serves
moto's S3 application (what `moto_server` serves) with two changes:

* It is served by cheroot (HTTP/1.1, keep-alive, TLS), as S3 keeps a
  client's connections open. `moto_server`'s werkzeug development server
  answers every request with `Connection: close` (and drains the socket
  after each, so it cannot simply keep them): every request of
  tensorflow-io's AWS SDK opened a new TCP connection and TLS session
  (about 0.7 ms of the client's CPU each, some 35 requests a checkpoint).
* `_serve_ranges_from_the_buffer`: moto 5.2 answers every ranged GET by
  reading the whole object (`FakeKey.value`) and slicing it, so each
  request costs the object's size. TensorFlow reads an object in 128 KiB
  to 512 KiB ranged GETs, which makes reading a 1 GiB object take hours.
  Real S3 costs a ranged GET its range; so does this server.

Everything else (the HTTP API, listing, multipart uploads, errors) is moto's.
"""

import contextlib
from importlib import metadata
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from typing import AbstractSet, Any, Dict, List, Optional, Sequence
import urllib.error
import urllib.request

_HOST = "127.0.0.1"
# Connections served at once: tensorflow-io's executor threads (4 in the
# benchmark) and the tests' clients, each kept alive between requests.
_SERVER_THREADS = 16
_START_TIMEOUT_SECONDS = 60.0
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
# How children reach the server; none of it is a real credential.
# The server's certificate is made at start: not verified (`tls`).
_UNVERIFIED = ssl._create_unverified_context()  # pylint: disable=protected-access
_ENVIRON = {
  "S3_USE_HTTPS": "0",
  "S3_VERIFY_SSL": "0",
  "AWS_REGION": "us-east-1",
  "AWS_ACCESS_KEY_ID": "testing",
  "AWS_SECRET_ACCESS_KEY": "testing",
  # Keeps the AWS SDK from probing EC2 instance metadata (a network call).
  "AWS_EC2_METADATA_DISABLED": "true",
}


def moto_version() -> str:
  """The installed moto's version, for reports."""
  return metadata.version("moto")


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
    probe.bind((_HOST, 0))
    return probe.getsockname()[1]


class S3Server:
  """moto's S3 server in a child process, stopped on exit from the block.

  Attributes:
    endpoint: `http://127.0.0.1:PORT`.
  """

  def __init__(
    self,
    *,
    log_path: Optional[str] = None,
    cpus: Optional[AbstractSet[int]] = None,
    tls: bool = False,
  ):
    """Prepares a server; `start()` (or `with`) starts it.

    Args:
      log_path: Where the server's request log goes (default: discarded).
      cpus: CPUs the server runs on (default: any). A benchmark gives it
        cores of its own, as a remote store would not share the trainer's.
      tls: Whether it serves HTTPS (module docstring).
    """
    self._log_path = log_path
    self._cpus = sorted(cpus) if cpus else None
    self._tls = tls
    self._process: Optional[subprocess.Popen] = None
    self.endpoint = ""

  def __enter__(self) -> "S3Server":
    self.start()
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.stop()

  def start(self) -> None:
    """Starts the server and waits until it answers.

    Raises:
      RuntimeError: It exited or did not answer within a minute; the
        message holds the end of its log.
    """
    port = _free_port()
    self.endpoint = f"{'https' if self._tls else 'http'}://{_HOST}:{port}"
    log = (
      open(self._log_path, "wb")  # pylint: disable=consider-using-with
      if self._log_path
      else tempfile.TemporaryFile()
    )
    # The server imports nothing of TensorFlow; PYTHONPATH finds this module
    # (Bazel sets it for the test, `bazel run` for the benchmark).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "benchmarks.s3_server", f"--port={port}"]
    if self._cpus:
      command.append("--cpus=" + ",".join(str(c) for c in self._cpus))
    if self._tls:
      command.append("--tls=1")
    self._process = subprocess.Popen(  # pylint: disable=consider-using-with
      command,
      stdout=log,
      stderr=subprocess.STDOUT,
      stdin=subprocess.DEVNULL,
      env=env,
    )
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while True:
      if self._process.poll() is not None or time.monotonic() > deadline:
        log.seek(0)
        tail = log.read()[-4000:].decode(errors="replace")
        self.stop()
        log.close()
        raise RuntimeError(f"moto's S3 server did not start:\n{tail}")
      try:
        with urllib.request.urlopen(
          self.endpoint, timeout=5, context=_UNVERIFIED
        ):
          break
      except (urllib.error.URLError, ConnectionError, TimeoutError):
        time.sleep(0.2)
    log.close()  # The child holds its own descriptor.

  def stop(self) -> None:
    """Stops the server (SIGTERM, then SIGKILL); its objects are gone."""
    if self._process is None:
      return
    if self._process.poll() is None:
      self._process.send_signal(signal.SIGTERM)
      try:
        self._process.wait(timeout=10)
      except subprocess.TimeoutExpired:
        self._process.kill()
        self._process.wait()
    self._process = None

  def environ(self) -> Dict[str, str]:
    """Environment variables that point tensorflow-io's S3 client here."""
    tls = {"S3_USE_HTTPS": "1"} if self._tls else {}
    return {**_ENVIRON, **tls, "S3_ENDPOINT": self.endpoint}

  def client(self) -> Any:
    """A boto3 S3 client of this server (boto3 comes with moto)."""
    import boto3  # pylint: disable=g-import-not-at-top

    return boto3.client(
      "s3",
      endpoint_url=self.endpoint,
      region_name=_ENVIRON["AWS_REGION"],
      aws_access_key_id=_ENVIRON["AWS_ACCESS_KEY_ID"],
      aws_secret_access_key=_ENVIRON["AWS_SECRET_ACCESS_KEY"],
      verify=False,  # Its certificate is made at start (`tls`).
    )

  def create_bucket(self, name: str) -> str:
    """Creates a bucket (tf.io.gfile cannot); returns `s3://<name>`."""
    self.client().create_bucket(Bucket=name)
    return f"s3://{name}"

  def description(self) -> str:
    """What serves, for reports."""
    scheme = "HTTPS" if self._tls else "HTTP"
    return f"moto {moto_version()} over {scheme} through tensorflow-io 0.36.0"

  def remove_prefix(self, bucket: str, prefix: str) -> None:
    """Deletes every object under `prefix`."""
    client = self.client()
    for key in self.keys(bucket, prefix):
      client.delete_object(Bucket=bucket, Key=key)

  def upload_file(self, path: str, bucket: str, key: str) -> None:
    """Uploads a local file with boto3 (not through TensorFlow)."""
    self.client().upload_file(path, bucket, key)

  def keys(self, bucket: str, prefix: str = "") -> List[str]:
    """Every object key under `prefix`, sorted; what any reader can see."""
    client = self.client()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(
      Bucket=bucket, Prefix=prefix
    ):
      keys += [item["Key"] for item in page.get("Contents", [])]
    return sorted(keys)


class _RangeOfValue:
  """An object's bytes as moto's range handling uses them, read on demand.

  moto's `_handle_range_header` takes `len()` of the value and slices it
  once; this reads only that slice from the key's buffer.
  """

  def __init__(self, key: Any):
    self._key = key

  def __len__(self) -> int:
    return self._key.size

  def __bool__(self) -> bool:
    return self._key.size > 0

  def __getitem__(self, part: slice) -> bytes:
    start, stop, _ = part.indices(self._key.size)
    with self._key.lock:
      # pylint: disable-next=protected-access
      buffer = self._key._value_buffer
      buffer.seek(start)
      return buffer.read(max(0, stop - start))


def _serve_ranges_from_the_buffer() -> None:
  """Makes moto answer a plain ranged GET by reading only the range.

  Only a GET of an object with no query string and one `bytes=A-B` range
  (A <= B) takes this path: moto's `_handle_range_header` then always
  slices the value (a start past the end is moto's InvalidRange error).
  """
  # pylint: disable=g-import-not-at-top,protected-access
  from moto.s3 import models
  from moto.s3 import responses

  ranged = threading.local()
  fake_key: Any = models.FakeKey
  s3_response: Any = responses.S3Response
  value = fake_key.__dict__["value"]  # The property itself.

  def lazy_value(key: Any) -> Any:
    if getattr(ranged, "active", False):
      return _RangeOfValue(key)
    return value.fget(key)

  fake_key.value = property(lazy_value, value.fset)
  key_response = s3_response.key_response

  def ranged_key_response(
    self: Any, request: Any, full_url: str, headers: Any
  ) -> Any:
    match = _RANGE.match(request.headers.get("range") or "")
    ranged.active = (
      request.method == "GET"
      and "?" not in full_url
      and match is not None
      and int(match.group(1)) <= int(match.group(2))
    )
    try:
      return key_response(self, request, full_url, headers)
    finally:
      ranged.active = False

  s3_response.key_response = ranged_key_response


_USAGE = (
  "usage: python -m benchmarks.s3_server --port=N [--cpus=I,J,...] [--tls=1]"
)


def main(argv: Sequence[str]) -> None:
  """`python -m benchmarks.s3_server --port=N`: moto's server on loopback.

  `--cpus=I,J` pins it (and the threads it starts) to those CPUs first.
  """
  values = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--"))
  known = "port" in values and set(values) <= {"port", "cpus", "tls"}
  if not known or len(values) != len(argv) - 1:  # Unknown, repeated, bare.
    sys.exit(_USAGE)
  if "cpus" in values:
    os.sched_setaffinity(0, {int(c) for c in values["cpus"].split(",")})
  _serve_ranges_from_the_buffer()
  # pylint: disable=g-import-not-at-top
  from cheroot import wsgi
  from cheroot.ssl import builtin
  from moto.moto_server import werkzeug_app
  from werkzeug import serving

  # pylint: enable=g-import-not-at-top
  os.environ.setdefault("MOTO_PORT", values["port"])  # As moto_server sets.
  server = wsgi.Server(
    (_HOST, int(values["port"])),
    werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app),
    numthreads=_SERVER_THREADS,
  )
  with tempfile.TemporaryDirectory(prefix="s3_server.") as work:
    if values.get("tls") == "1":
      # A certificate made at start, as moto_server's `--ssl` makes one.
      cert, key = serving.make_ssl_devcert(
        os.path.join(work, "server"), host=_HOST
      )
      server.ssl_adapter = builtin.BuiltinSSLAdapter(cert, key)
    # safe_start stops the server on SystemExit, as on KeyboardInterrupt.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt, SystemExit):
      server.safe_start()


if __name__ == "__main__":
  main(sys.argv)
