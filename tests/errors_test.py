"""The error policy: one module of error classes, each also a builtin."""

import ast
import inspect
import os

from absl.testing import absltest
from absl.testing import parameterized

from estimator_ckpt import errors


def _package_sources():
  root = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "estimator_ckpt",
  )
  for directory, _, names in os.walk(root):
    for name in names:
      if name.endswith(".py"):
        yield os.path.join(directory, name)


def _error_classes():
  return [
    value
    for value in vars(errors).values()
    if inspect.isclass(value) and issubclass(value, Exception)
  ]


class ErrorsTest(parameterized.TestCase):
  def test_every_class_is_an_error_and_a_builtin(self):
    classes = [c for c in _error_classes() if c is not errors.Error]
    self.assertGreaterEqual(len(classes), 12)
    for error_class in classes:
      self.assertTrue(issubclass(error_class, errors.Error), error_class)
      builtins = [
        base
        for base in error_class.__mro__[1:]
        if base.__module__ == "builtins"
        and base not in (Exception, BaseException, object)
      ]
      self.assertTrue(builtins, f"{error_class} refines no builtin error")

  def test_no_public_error_class_outside_errors_py(self):
    # Private exceptions (a leading underscore) never leave their module.
    for path in _package_sources():
      if path.endswith(os.path.join("estimator_ckpt", "errors.py")):
        continue
      with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
      for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
          bases = [ast.unparse(base) for base in node.bases]
          self.assertFalse(
            any(b.endswith(("Error", "Exception")) for b in bases),
            f"{path}: class {node.name}({', '.join(bases)}) belongs in "
            "errors.py",
          )

  @parameterized.named_parameters(
    ("short", ["b", "a"], 10, ", ", "b, a"),
    ("exact", ["a", "b", "c"], 3, ", ", "a, b, c"),
    ("truncated", [str(i) for i in range(5)], 2, ", ", "0, 1, ... and 3 more"),
    ("lines", ["x", "y", "z"], 1, "\n  ", "x\n  ... and 2 more"),
    ("empty", [], 3, ", ", ""),
  )
  def test_format_list(self, items, limit, separator, expected):
    self.assertEqual(
      errors.format_list(items, limit=limit, separator=separator), expected
    )

  def test_format_names_sorts_deduplicates_and_quotes(self):
    self.assertEqual(errors.format_names(["b", "a", "b"]), "`a`, `b`")
    self.assertEqual(
      errors.format_names(map(str, range(12)), limit=2),
      "`0`, `1`, ... and 10 more",
    )


if __name__ == "__main__":
  absltest.main()
