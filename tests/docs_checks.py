"""Checks of Markdown docs against the repository they describe.

Plain functions, each returning one message per problem found, and the
`Project` they check against, read from a repository's files (or a test's
runfiles) without importing the package or TensorFlow. `docs_test` runs them
on the real docs, and on broken ones to show that each can fail.
"""

import ast
import os
import re
from typing import Dict, List, Optional, Set, Tuple

# Docs whose links, labels, flags and names are checked.
_TOP_DOCS = ("README.md", "CONTRIBUTING.md")
_DOCS_DIR = "docs"
# Checked for links only: it records old labels and flags on purpose.
LINKS_ONLY_DOCS = ("CHANGELOG.md",)

# Directories whose Python sources may define flags (`DEFINE_*`).
_SOURCE_DIRS = ("estimator_ckpt", "examples", "benchmarks", "testdata", "tests")

# Flags the docs mention that belong to other tools, not to our binaries.
_OTHER_TOOLS_FLAGS = frozenset(
  {
    # Bazel.
    "test_arg",
    "test_filter",
    "test_output",
    "test_timeout",
    # pip.
    "no-build-isolation",
    "no-deps",
    "no-index",
    # absl's built-in flags, on every binary.
    "help",
    "helpfull",
    # tools/lint.sh, and ruff in it.
    "check",
    "fix",
  }
)
# Bazel's own labels.
_BAZEL_LABELS = frozenset({"//visibility:private", "//visibility:public"})

_FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:[ \t]+\"[^\"\n]*\")?\)")
# //pkg:target, //pkg, //pkg/..., //pkg:<a|b> (alternatives); not URLs.
_LABEL = re.compile(
  r"(?<![\w:/.])//((?:[\w.-]+/)*[\w.-]+|\.\.\.|)"
  r"(?::(<[\w.|-]+>|[\w.+-]+))?"
)
# `--warm_start_*` stands for every flag with that prefix.
_FLAG = re.compile(r"(?<![\w-])--([A-Za-z][\w-]*)(\*?)")
_FLAG_DEFINITION = re.compile(
  r"DEFINE_(\w+)\(\s*(?:name\s*=\s*)?[\"'](\w+)[\"']", re.S
)
_PUBLIC_NAME = re.compile(r"(?<![\w.])estimator_ckpt\.(\w+)(?:\.(\w+))?")
_ERRORS_NAME = re.compile(r"(?<![\w.])errors\.([A-Z]\w*)")
_BUILD_NAME = re.compile(r"\bname\s*=\s*\"([^\"]+)\"")
_EXPORTS_FILES = re.compile(r"exports_files\(\s*\[([^\]]*)\]", re.S)


def _read(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()


def _without_code(text: str) -> str:
  """Markdown without fenced blocks and inline code: prose and headings."""
  return _INLINE_CODE.sub("", _FENCE.sub("", text))


def github_anchor(heading: str) -> str:
  """The anchor GitHub gives a heading: `## Warm start` -> `warm-start`."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # Links: text.
  text = re.sub(r"[^\w\- ]", "", text.lower())
  return text.replace(" ", "-")


def anchors(text: str) -> Set[str]:
  """Every heading anchor of a Markdown text, duplicates numbered as GitHub."""
  seen: Dict[str, int] = {}
  result = set()
  for match in _HEADING.finditer(_FENCE.sub("", text)):
    anchor = github_anchor(match.group(2))
    count = seen.get(anchor, 0)
    seen[anchor] = count + 1
    result.add(anchor if count == 0 else f"{anchor}-{count}")
  return result


def link_problems(doc: str, text: str, root: str) -> List[str]:
  """Relative links of `doc` (a path under `root`) that lead nowhere."""
  problems = []
  for match in _LINK.finditer(_without_code(text)):
    target = match.group(1)
    if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:.
      continue
    path, _, anchor = target.partition("#")
    if path:
      resolved = os.path.normpath(
        os.path.join(os.path.dirname(os.path.join(root, doc)), path)
      )
      if not os.path.exists(resolved):
        problems.append(f"{doc}: link ({target}) points to no file")
        continue
    else:
      resolved = os.path.join(root, doc)
    if anchor:
      if os.path.isdir(resolved) or not resolved.endswith(".md"):
        problems.append(
          f"{doc}: link ({target}) has an anchor into a file without headings"
        )
      elif anchor not in anchors(_read(resolved)):
        problems.append(
          f"{doc}: link ({target}): no heading of "
          f"{os.path.relpath(resolved, root)} has the anchor #{anchor}"
        )
  return problems


def labels(text: str) -> List[Tuple[str, Optional[str]]]:
  """Bazel labels in `text`: (package, target or None), alternatives split."""
  result: List[Tuple[str, Optional[str]]] = []
  for match in _LABEL.finditer(text):
    package, target = match.group(1), match.group(2)
    if target and target.startswith("<"):
      result.extend((package, t) for t in target[1:-1].split("|"))
    else:
      result.append((package, target))
  return result


def build_targets(build_text: str) -> Set[str]:
  """Target names a BUILD file declares: `name = "..."` and exported files."""
  names = set(_BUILD_NAME.findall(build_text))
  for files in _EXPORTS_FILES.findall(build_text):
    names.update(re.findall(r"\"([^\"]+)\"", files))
  return names


def label_problems(
  doc: str, text: str, packages: Dict[str, Set[str]]
) -> List[str]:
  """Labels of `doc` naming a package or target that `packages` lacks.

  Args:
    doc: The doc's path, for messages.
    text: Its Markdown.
    packages: Package path ("" for the root) -> its BUILD file's targets.

  Returns:
    One message per unknown label.
  """
  problems = []
  for package, target in labels(text):
    label = f"//{package}" + (f":{target}" if target else "")
    if label in _BAZEL_LABELS:
      continue
    if package == "..." or package.endswith("/..."):
      directory = package[: -len("...")].rstrip("/")
      if not any(p == directory or p.startswith(directory) for p in packages):
        problems.append(f"{doc}: {label}: no package under //{directory}")
      continue
    if package not in packages:
      problems.append(
        f"{doc}: {label}: no package //{package} (or its BUILD file is not "
        "in the data of //tests:docs_test)"
      )
      continue
    # A bare //pkg in prose names the package, which exists.
    if target and target not in packages[package]:
      problems.append(
        f"{doc}: {label}: {package or '.'}/BUILD has no {target!r}"
      )
  return problems


def defined_flags(source: str) -> Set[str]:
  """Flags a Python source defines, with `no<name>` for boolean ones."""
  flags = set()
  for kind, name in _FLAG_DEFINITION.findall(source):
    flags.add(name)
    if kind in ("bool", "boolean"):
      flags.add("no" + name)
  return flags


def mentioned_flags(text: str) -> Set[str]:
  """The `--flags` `text` mentions, without `--` (and without `*`)."""
  return {name for name, _ in _FLAG.findall(text)}


def flag_problems(doc: str, text: str, flags: Set[str]) -> List[str]:
  """`--flags` of `doc` that neither we nor the tools we name define."""
  problems = []
  for name, star in sorted(set(_FLAG.findall(text))):
    if star and any(flag.startswith(name) for flag in flags):
      continue
    if name not in flags and name not in _OTHER_TOOLS_FLAGS:
      problems.append(
        f"{doc}: --{name} is defined by no DEFINE_* in the project's sources"
        " (or the source is not in the data of //tests:docs_test)"
      )
  return problems


def module_names(source: str) -> Set[str]:
  """Top-level names a module defines: classes, functions, globals, imports."""
  names = set()
  for node in ast.parse(source).body:
    if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
      names.add(node.name)
    elif isinstance(node, ast.ImportFrom):  # Re-exports (keys.py).
      names.update(a.asname or a.name for a in node.names)
    elif isinstance(node, (ast.Assign, ast.AnnAssign)):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      names.update(t.id for t in targets if isinstance(t, ast.Name))
  return names


def public_all(init_source: str) -> Set[str]:
  """`__all__` of `estimator_ckpt/__init__.py`, read from its AST."""
  for node in ast.parse(init_source).body:
    if isinstance(node, ast.Assign) and any(
      isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
    ):
      return set(ast.literal_eval(node.value))
  raise AssertionError("estimator_ckpt/__init__.py has no __all__")


def name_problems(
  doc: str,
  text: str,
  exported: Set[str],
  modules: Dict[str, Set[str]],
) -> List[str]:
  """`estimator_ckpt.X` (and `errors.X`, `keys.X`) names that do not exist.

  Args:
    doc: The doc's path, for messages.
    text: Its Markdown.
    exported: `estimator_ckpt.__all__` and the dunder names of `__init__.py`.
    modules: Module name under `estimator_ckpt` -> the names it defines.

  Returns:
    One message per unknown name.
  """
  problems = []
  for name, attribute in set(_PUBLIC_NAME.findall(text)):
    if name.startswith("_") and not name.startswith("__"):
      continue  # Private modules: paths, not API.
    if name not in exported and name not in modules:
      problems.append(
        f"{doc}: estimator_ckpt.{name} is not in estimator_ckpt.__all__"
      )
    elif attribute and name in ("errors", "keys"):
      if attribute not in modules[name]:
        problems.append(
          f"{doc}: estimator_ckpt.{name}.{attribute}: {name}.py defines no "
          f"{attribute!r}"
        )
  for attribute in set(_ERRORS_NAME.findall(text)):
    if attribute not in modules["errors"]:
      problems.append(f"{doc}: errors.{attribute}: errors.py defines no such")
  return problems


class Project:
  """What the docs are checked against, read from a repository's files."""

  def __init__(self, root: str):
    self.root = root
    self.packages: Dict[str, Set[str]] = {}
    self.flags: Set[str] = set()
    self.flag_sources: Dict[str, Set[str]] = {}
    top_level = ("third_party",) + _SOURCE_DIRS
    for directory, subdirectories, files in os.walk(root):
      relative = os.path.relpath(directory, root)
      package = "" if relative == "." else relative.replace(os.sep, "/")
      if not package:
        subdirectories[:] = [d for d in subdirectories if d in top_level]
      if "BUILD" in files:
        self.packages[package] = build_targets(
          _read(os.path.join(directory, "BUILD"))
        )
      if package.split("/")[0] in _SOURCE_DIRS:
        for name in files:
          if name.endswith(".py"):
            defined = defined_flags(_read(os.path.join(directory, name)))
            self.flag_sources[f"{package}/{name}"] = defined
            self.flags |= defined
    package_dir = os.path.join(root, "estimator_ckpt")
    init_source = _read(os.path.join(package_dir, "__init__.py"))
    self.exported = public_all(init_source) | {
      n for n in module_names(init_source) if n.startswith("__")
    }
    self.modules = {
      name[: -len(".py")]: module_names(_read(os.path.join(package_dir, name)))
      for name in os.listdir(package_dir)
      if name.endswith(".py") and name != "__init__.py"
    }

  def docs(self) -> List[str]:
    """The checked docs: README, CONTRIBUTING and docs/*.md, as paths."""
    guides = sorted(
      f"{_DOCS_DIR}/{name}"
      for name in os.listdir(os.path.join(self.root, _DOCS_DIR))
      if name.endswith(".md")
    )
    return list(_TOP_DOCS) + guides

  def read(self, doc: str) -> str:
    return _read(os.path.join(self.root, doc))
