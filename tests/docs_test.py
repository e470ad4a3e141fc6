"""The README and the guides under docs/ against the code they describe.

Docs drift silently: a section moves and a link dangles, a target is renamed
and a `bazel run` line stops working, a flag is renamed and the README still
teaches the old one. This test reads README.md, CONTRIBUTING.md and
docs/*.md (CHANGELOG.md for links only: it names old labels on purpose) and
fails on:

- a relative link to a file that does not exist, or to a `#anchor` that is
  no heading of its file (GitHub's anchors: lower case, punctuation dropped,
  spaces as hyphens);
- a Bazel label `//pkg:target` (or `//pkg`, `//pkg/...`) with no such
  package, or no `name = "target"` (or exported file) in `pkg/BUILD`
  (`//pkg:<a|b>` checks `a` and `b`);
- a `--flag` that no `DEFINE_*` in the project's sources defines (`--noflag`
  for a boolean; `--prefix_*` for any flag with the prefix), except the few
  flags of Bazel, pip, absl and tools/lint.sh
  (`docs_checks._OTHER_TOOLS_FLAGS`);
- a name `estimator_ckpt.X` that is neither in `estimator_ckpt.__all__` nor a
  module of the package (the binaries run with `python -m`), and an
  `estimator_ckpt.errors.X`, `errors.X` or `estimator_ckpt.keys.X` the module
  does not define;
- an error class of `errors.py` missing from the error table of
  docs/reliability.md, or a flag of the tools, the training example or the
  checkpoint flags that no doc mentions.

Everything is read from the test's runfiles (the repository root when run
directly), parsed without importing the package or TensorFlow. The checks
are plain functions in `docs_checks`; `CheckersTest` feeds them broken docs,
so each can fail.
"""

import os
import re
from typing import Iterable

from absl.testing import absltest

from tests import docs_checks
from tests.docs_checks import anchors
from tests.docs_checks import defined_flags
from tests.docs_checks import flag_problems
from tests.docs_checks import github_anchor
from tests.docs_checks import label_problems
from tests.docs_checks import link_problems
from tests.docs_checks import name_problems

# Runfiles root under Bazel (the repository root when run directly).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Binaries whose every flag some doc must mention, and the checkpoint flags.
_DOCUMENTED_FLAG_SOURCES = (
  "estimator_ckpt/inspect_main.py",
  "estimator_ckpt/convert_main.py",
  "estimator_ckpt/verify_main.py",
  "estimator_ckpt/_src/checkpoint_flags.py",
  "examples/ranking/train_main.py",
)
# The doc whose table lists every error class.
_ERRORS_DOC = "docs/reliability.md"


def _report(problems: Iterable[str]) -> str:
  problems = list(problems)
  return f"{len(problems)} problems:\n" + "\n".join(problems)


class DocsTest(absltest.TestCase):
  """The real docs against the real sources."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.project = docs_checks.Project(_ROOT)

  def test_the_data_is_here(self):
    # Guards the checks below against passing on missing inputs.
    docs = self.project.docs()
    self.assertGreaterEqual(len(docs), 8, docs)
    for source in _DOCUMENTED_FLAG_SOURCES:
      self.assertTrue(self.project.flag_sources.get(source), source)
    for package in ("", "estimator_ckpt", "examples/ranking", "tests"):
      self.assertIn(package, self.project.packages)
    self.assertIn("convert", self.project.exported)
    self.assertIn("CorruptCheckpointError", self.project.modules["errors"])

  def test_links(self):
    problems = []
    for doc in self.project.docs() + list(docs_checks.LINKS_ONLY_DOCS):
      problems += link_problems(doc, self.project.read(doc), _ROOT)
    self.assertEmpty(problems, _report(problems))

  def test_bazel_labels(self):
    problems = []
    for doc in self.project.docs():
      problems += label_problems(
        doc, self.project.read(doc), self.project.packages
      )
    self.assertEmpty(problems, _report(problems))

  def test_flags(self):
    problems = []
    for doc in self.project.docs():
      problems += flag_problems(doc, self.project.read(doc), self.project.flags)
    self.assertEmpty(problems, _report(problems))

  def test_public_names(self):
    problems = []
    for doc in self.project.docs():
      problems += name_problems(
        doc,
        self.project.read(doc),
        self.project.exported,
        self.project.modules,
      )
    self.assertEmpty(problems, _report(problems))

  def test_every_error_class_is_in_the_error_table(self):
    table = {
      m.group(1)
      for m in re.finditer(
        r"^\| `(\w+)` \(", self.project.read(_ERRORS_DOC), re.M
      )
    }
    classes = {
      name
      for name in self.project.modules["errors"]
      if name.endswith("Error") and name != "Error"  # The base class.
    }
    self.assertEmpty(
      sorted(classes - table),
      f"error classes missing from the table of {_ERRORS_DOC}",
    )

  def test_every_flag_of_the_binaries_is_documented(self):
    text = "\n".join(self.project.read(doc) for doc in self.project.docs())
    mentioned = docs_checks.mentioned_flags(text)
    missing = []
    for source in _DOCUMENTED_FLAG_SOURCES:
      defined = self.project.flag_sources[source]
      for flag in sorted(defined):
        if flag.startswith("no") and flag[2:] in defined:
          continue  # The negative spelling of a boolean flag.
        if flag not in mentioned and "no" + flag not in mentioned:
          missing.append(f"--{flag} ({source})")
    self.assertEmpty(missing, "flags no doc mentions")


class CheckersTest(absltest.TestCase):
  """Each check on broken docs: it finds what is wrong, and only that."""

  def setUp(self):
    super().setUp()
    self.root = self.create_tempdir().full_path
    os.makedirs(os.path.join(self.root, "docs"))
    with open(os.path.join(self.root, "docs", "guide.md"), "w") as f:
      f.write(
        "# A guide\n\n## Warm start: flags\n\n```bash\n# not a heading\n```\n"
      )

  def test_links(self):
    text = (
      "[ok](docs/guide.md), [ok](docs/guide.md#warm-start-flags), "
      "[ok](https://example.com/x.md), [ok](#top)\n# Top\n"
      "[gone](docs/gone.md), [bad anchor](docs/guide.md#warm-start), "
      "[code](docs/guide.md#not-a-heading)\n"
      "```\n[in code](docs/nothing.md)\n```\n"
    )
    with open(os.path.join(self.root, "README.md"), "w") as f:
      f.write(text)
    problems = link_problems("README.md", text, self.root)
    self.assertLen(problems, 3, problems)
    self.assertIn("(docs/gone.md) points to no file", problems[0])
    self.assertIn("#warm-start", problems[1])
    self.assertIn("#not-a-heading", problems[2])

  def test_anchors_follow_github(self):
    self.assertEqual(
      github_anchor("The example: `//examples/ranking:keras`"),
      "the-example-examplesrankingkeras",
    )
    self.assertEqual(anchors("## Same\n## Same\n"), {"same", "same-1"})

  def test_labels(self):
    packages = {
      "": {"README.md"},
      "estimator_ckpt": {"estimator_ckpt", "inspect"},
    }
    text = (
      "bazel run //estimator_ckpt:inspect //estimator_ckpt //:README.md "
      "//... https://example.com/a //estimator_ckpt:<inspect|train> "
      "//examples/ranking:train //estimator_ckpt:guide_scenario "
      "//visibility:private"
    )
    problems = label_problems("README.md", text, packages)
    self.assertLen(problems, 3, problems)
    self.assertIn("//estimator_ckpt:train", problems[0])
    self.assertIn("no package //examples/ranking", problems[1])
    self.assertIn("no 'guide_scenario'", problems[2])

  def test_flags(self):
    source = (
      'flags.DEFINE_bool(\n  "tf1_names", True, "x")\n'
      'flags.DEFINE_string("to", None, "x")'
    )
    flags = defined_flags(source)
    self.assertEqual(flags, {"tf1_names", "notf1_names", "to"})
    problems = flag_problems(
      "README.md",
      "--to=tf2 --notf1_names --help --test_arg=--fuzz_cases=2 --totally "
      "`--tf1_*` `--warm_start_*`",
      flags,
    )
    self.assertEqual(
      [p.split(" ")[1] for p in problems],
      ["--fuzz_cases", "--totally", "--warm_start_"],
    )

  def test_names(self):
    modules = {
      "errors": {"Error", "ShapeMismatchError"},
      "keys": {"variable_key"},
      "convert_main": set(),
    }
    text = (
      "`estimator_ckpt.convert` `estimator_ckpt.errors.ShapeMismatchError` "
      "`estimator_ckpt.keys.variable_key` "
      "`python -m estimator_ckpt.convert_main` "
      "`estimator_ckpt._src.scaffold` `estimator_ckpt.__version__` "
      "`estimator_ckpt.transmogrify` `errors.NoSuchError` "
      "`estimator_ckpt.keys.no_such_key`"
    )
    problems = sorted(
      name_problems(
        "README.md",
        text,
        {"convert", "errors", "keys", "__version__"},
        modules,
      )
    )
    self.assertLen(problems, 3, problems)
    self.assertIn("errors.NoSuchError", problems[0])
    self.assertIn("estimator_ckpt.keys.no_such_key", problems[1])
    self.assertIn("estimator_ckpt.transmogrify", problems[2])


if __name__ == "__main__":
  absltest.main()
