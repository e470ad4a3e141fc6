"""The pip package: built offline, installed into a fresh venv, run as a user.

Copies what a build needs (pyproject.toml, README.md, LICENSE,
requirements.in, the `estimator_ckpt` sources) from the test's runfiles into
a temporary directory, installs it with `pip install --no-build-isolation
--no-index --no-deps` into a new venv, and runs the console scripts from
outside the repository with PYTHONPATH cleared, so that the only
`estimator_ckpt` they can find is the installed one.

The new venv sees the project venv's packages (TensorFlow, absl, pip,
setuptools, wheel) through a `.pth` file naming that venv's site-packages
directory: one directory on `sys.path`, nothing else of the project venv
(its own `.pth` files are not read), so the build uses the project's pinned
setuptools 65.5 and wheel, offline.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
from absl.testing import absltest

import estimator_ckpt

from tests import tool_fixtures

# Runfiles root under Bazel (the repository root when run directly).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The repository itself (runfiles are symlinks into it): the venv must not
# import from here, and no command may run or write inside it.
_REPOSITORY = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

_ROOT_FILES = ("pyproject.toml", "README.md", "LICENSE", "requirements.in")
_PACKAGES = (
  "estimator_ckpt",
  "estimator_ckpt/_src",
  "estimator_ckpt/_src/cli",
  "estimator_ckpt/_src/format",
)
_SCRIPTS = (
  "estimator-ckpt-inspect",
  "estimator-ckpt-convert",
  "estimator-ckpt-verify",
)
# Each console script's module, and a flag its help must show.
_SCRIPT_MODULES = {
  "estimator-ckpt-inspect": ("estimator_ckpt.inspect_main", "--[no]values"),
  "estimator-ckpt-convert": ("estimator_ckpt.convert_main", "--to"),
  "estimator-ckpt-verify": ("estimator_ckpt.verify_main", "--against"),
}
_TIMEOUT_SECS = 300

# Printed as JSON by the venv's Python: where `estimator_ckpt` comes from and
# what pip recorded for the distribution.
_DESCRIBE_INSTALL = """
import importlib.metadata, importlib.util, json, sysconfig
import estimator_ckpt
distribution = importlib.metadata.distribution("estimator-ckpt")
print(json.dumps({
    "file": estimator_ckpt.__file__,
    "version": estimator_ckpt.__version__,
    "purelib": sysconfig.get_path("purelib"),
    "metadata_version": distribution.version,
    "license": distribution.metadata["License"],
    "requires_python": distribution.metadata["Requires-Python"],
    "requires": distribution.requires,
    "files": [str(f) for f in distribution.files],
    "scripts": sorted(e.name for e in distribution.entry_points
                      if e.group == "console_scripts"),
    "findable": {name: importlib.util.find_spec(name) is not None
                 for name in ("examples", "tests", "benchmarks", "testdata")},
}))
"""


def _clean_environment() -> Dict[str, str]:
  """The test's environment without its Python and pip settings.

  Bazel puts the runfiles (which hold the sources) on PYTHONPATH; the user's
  pip configuration may name indexes or find-links. Neither may reach the
  venv: the install must work offline from the copied sources alone.
  """
  env = {
    k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))
  }
  env.update(
    PIP_CONFIG_FILE=os.devnull,
    PIP_DISABLE_PIP_VERSION_CHECK="1",
    PIP_NO_INPUT="1",
    PYTHONNOUSERSITE="1",
  )
  return env


def _run(
  command: Sequence[str], cwd: str, **env: str
) -> subprocess.CompletedProcess:
  return subprocess.run(
    list(command),
    cwd=cwd,
    env={**_clean_environment(), **env},
    capture_output=True,
    text=True,
    check=False,
    timeout=_TIMEOUT_SECS,
  )


def _inside(path: str, directory: str) -> bool:
  path, directory = os.path.realpath(path), os.path.realpath(directory)
  return os.path.commonpath([path, directory]) == directory


def _project_site_packages() -> List[str]:
  """The project venv's site-packages, from the running interpreter.

  Under Bazel the test runs with the project venv's python3 (tools/bazel puts
  it first on PATH), so its `sys.path` names that venv's site-packages.
  """
  found = [
    p
    for p in sys.path
    if os.path.basename(p) == "site-packages" and os.path.isdir(p)
  ]
  if not found:
    raise AssertionError(
      f"No site-packages directory on sys.path {sys.path}; "
      "run the test with the project venv's python."
    )
  for directory in found:
    # Else the venv could import the sources from there, not the install.
    if os.path.exists(os.path.join(directory, "estimator_ckpt")):
      raise AssertionError(
        f"{directory} holds an estimator_ckpt; uninstall "
        "it from the project venv."
      )
  return found


def _copy_sources(destination: str) -> List[str]:
  """Copies what a build needs from the runfiles; returns the .py files."""
  for name in _ROOT_FILES:
    source = os.path.join(_ROOT, name)
    if not os.path.isfile(source):
      raise AssertionError(
        f"{source} is missing: add //:{name} to the data of "
        "//tests:pip_install_test."
      )
    shutil.copyfile(source, os.path.join(destination, name))
  modules = []
  for directory, subdirectories, names in os.walk(
    os.path.join(_ROOT, "estimator_ckpt")
  ):
    subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
    for name in names:
      if name.endswith(".py"):
        relative = os.path.relpath(os.path.join(directory, name), _ROOT)
        os.makedirs(
          os.path.join(destination, os.path.dirname(relative)), exist_ok=True
        )
        shutil.copyfile(
          os.path.join(_ROOT, relative), os.path.join(destination, relative)
        )
        modules.append(relative)
  return sorted(modules)


class PipInstallTest(absltest.TestCase):
  venv: str
  outside: str
  modules: List[str]
  install: Dict[str, Any]

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    scratch = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.addClassCleanup(shutil.rmtree, scratch, ignore_errors=True)
    if _inside(scratch, _REPOSITORY):
      raise AssertionError(
        f"{scratch} is inside the repository "
        f"{_REPOSITORY}; set TEST_TMPDIR elsewhere."
      )
    source = os.path.join(scratch, "source")
    cls.venv = os.path.join(scratch, "venv")
    cls.outside = os.path.join(scratch, "cwd")
    os.makedirs(source)
    os.makedirs(cls.outside)
    cls.modules = _copy_sources(source)

    # Without pip: the project venv's pip, setuptools and wheel do the build.
    subprocess.run(
      [sys.executable, "-m", "venv", "--without-pip", cls.venv],
      env=_clean_environment(),
      check=True,
      timeout=_TIMEOUT_SECS,
    )
    python = os.path.join(cls.venv, "bin", "python")
    purelib = _run(
      [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
      cls.outside,
    ).stdout.strip()
    if not purelib or not _inside(purelib, cls.venv):
      raise AssertionError(
        f"The new venv's site-packages is {purelib!r}, not in {cls.venv}."
      )
    with open(os.path.join(purelib, "project_venv.pth"), "w") as f:
      f.write("".join(p + "\n" for p in _project_site_packages()))

    # pip's build directories go to TMPDIR: keep them with the rest.
    pip_tmp = os.path.join(scratch, "tmp")
    os.makedirs(pip_tmp)
    pip = _run(
      [
        python,
        "-m",
        "pip",
        "install",
        "--no-build-isolation",
        "--no-index",
        "--no-deps",
        "--no-cache-dir",
        source,
      ],
      cls.outside,
      TMPDIR=pip_tmp,
    )
    if pip.returncode != 0:
      raise AssertionError(
        f"pip install failed (exit {pip.returncode}):\n"
        f"--- stdout ---\n{pip.stdout}\n--- stderr ---\n{pip.stderr}"
      )
    logging.info("pip install:\n%s", pip.stdout)

    described = _run([python, "-c", _DESCRIBE_INSTALL], cls.outside)
    if described.returncode != 0:
      raise AssertionError(
        f"`import estimator_ckpt` failed in the venv:\n{described.stderr}"
      )
    cls.install = json.loads(described.stdout)

  def run_script(
    self, name: str, *args: str, expect_exit: Optional[int] = 0
  ) -> subprocess.CompletedProcess:
    """Runs a console script from outside the repository."""
    result = _run([os.path.join(self.venv, "bin", name), *args], self.outside)
    if expect_exit is not None:
      self.assertEqual(
        result.returncode,
        expect_exit,
        f"{name} {' '.join(args)}:\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}",
      )
    return result

  def test_imports_the_installed_package(self):
    self.assertTrue(
      _inside(self.install["file"], self.install["purelib"]),
      self.install["file"],
    )
    self.assertFalse(_inside(self.install["file"], _REPOSITORY))
    self.assertEqual(self.install["version"], estimator_ckpt.__version__)
    self.assertEqual(
      self.install["metadata_version"], estimator_ckpt.__version__
    )

  def test_metadata(self):
    with open(os.path.join(_ROOT, "requirements.in")) as f:
      requirements = [
        line.strip()
        for line in f
        if line.strip() and not line.lstrip().startswith("#")
      ]
    # Requirements are a set: setuptools 65 writes them in file order,
    # Debian 12's setuptools 66 sorts them. Neither order means anything.
    self.assertCountEqual(self.install["requires"], requirements)
    self.assertEqual(self.install["license"], "Apache-2.0")
    self.assertEqual(self.install["requires_python"], "<3.12,>=3.9")
    self.assertEqual(self.install["scripts"], sorted(_SCRIPTS))

  def test_installs_the_package_and_nothing_else(self):
    files = self.install["files"]
    installed = sorted(
      f for f in files if f.startswith("estimator_ckpt/") and f.endswith(".py")
    )
    self.assertEqual(installed, self.modules)
    for package in _PACKAGES:
      self.assertIn(f"{package}/__init__.py", installed)
    top_level = {f.split("/")[0] for f in files if not f.startswith("../")}
    dist_info = f"estimator_ckpt-{estimator_ckpt.__version__}.dist-info"
    self.assertEqual(top_level, {"estimator_ckpt", dist_info})
    self.assertTrue(
      any(
        os.path.basename(f) == "LICENSE"
        for f in files
        if f.startswith(dist_info + "/")
      ),
      files,
    )
    self.assertEqual(
      self.install["findable"],
      {
        "examples": False,
        "tests": False,
        "benchmarks": False,
        "testdata": False,
      },
    )
    for name in _SCRIPTS:
      self.assertIn(f"../../../bin/{name}", files)

  def test_help_shows_usage_and_flags(self):
    # absl describes the `__main__` module: for a console script that is
    # pip's generated wrapper, which has neither a docstring nor flags.
    python = os.path.join(self.venv, "bin", "python")
    for name, (module, flag) in _SCRIPT_MODULES.items():
      with self.subTest(name):
        # absl's --help exits with status 1 (absl/app.py, HelpFlag.parse).
        script = self.run_script(name, "--help", expect_exit=1)
        as_module = _run([python, "-m", module, "--help"], self.outside)
        self.assertEqual(as_module.returncode, 1, as_module.stderr)
        described = _run(
          [python, "-c", f"import {module}; print({module}.__doc__)"],
          self.outside,
        ).stdout.strip()
        self.assertTrue(described, module)
        self.assertIn(described.splitlines()[0], script.stdout)
        self.assertIn(f"  {flag}", script.stdout)
        # The same text but for the program name heading the flags.
        self.assertEqual(
          script.stdout.split("\nflags:\n")[1].split("\n", 2)[2],
          as_module.stdout.split("\nflags:\n")[1].split("\n", 2)[2],
        )
        self.assertEqual(
          script.stdout.split("\nflags:\n")[0],
          as_module.stdout.split("\nflags:\n")[0],
        )

  def test_inspect(self):
    golden = tool_fixtures.golden_path("est-tf2")
    self.assertTrue(os.path.isabs(golden))
    expected = estimator_ckpt.list_variables(golden)

    document = json.loads(
      self.run_script("estimator-ckpt-inspect", "--format=json", golden).stdout
    )
    self.assertEqual(document["format"], "tf2")
    self.assertEqual(
      [(v["name"], v["shape"]) for v in document["variables"]], expected
    )

    table = self.run_script("estimator-ckpt-inspect", "--values", golden).stdout
    self.assertIn("format      tf2 (object-based)", table)
    self.assertRegex(
      table,
      r"\nvar +\[\] +float32 +var_list/var/\.ATTRIBUTES"
      r"/VARIABLE_VALUE +4\.",
    )

    usage = self.run_script("estimator-ckpt-inspect", expect_exit=None)
    self.assertNotEqual(usage.returncode, 0)
    self.assertIn("Pass one checkpoint", usage.stderr)
    self.assertNotIn("Traceback", usage.stderr)

  def test_convert_then_verify(self):
    source = tool_fixtures.golden_path("est-tf1")
    destination = os.path.join(self.create_tempdir().full_path, "est-tf2")

    converted = self.run_script(
      "estimator-ckpt-convert", "--to=tf2", source, destination
    )
    prefix = converted.stdout.strip().splitlines()[-1]
    self.assertEqual(prefix, os.path.join(destination, "model.ckpt-1"))
    self.assertEqual(estimator_ckpt.checkpoint_format(destination), "tf2")
    self.assertEqual(
      estimator_ckpt.list_variables(destination),
      estimator_ckpt.list_variables(source),
    )

    verified = self.run_script(
      "estimator-ckpt-verify", destination, f"--against={source}"
    )
    self.assertRegex(verified.stdout, r"^OK .*bit-identical")


if __name__ == "__main__":
  absltest.main()
