"""Tests of rename specs."""

from absl.testing import absltest
from absl.testing import parameterized

from estimator_ckpt import errors
from estimator_ckpt._src import rename_rules


class RenamingTest(parameterized.TestCase):
  @parameterized.named_parameters(
    ("drop_scope", {"tower/": ""}, "tower/dense/kernel", "dense/kernel"),
    ("add_scope", {"/": "backbone/"}, "dense/kernel", "backbone/dense/kernel"),
    ("root_value", {"tower/": "/"}, "tower/a", "a"),
    ("exact", {"a/b": "c"}, "a/b", "c"),
    ("exact_beats_prefix", {"a/": "x/", "a/b": "c"}, "a/b", "c"),
    ("longest_prefix", {"a/": "x/", "a/b/": "y/"}, "a/b/c", "y/c"),
    ("unmatched", {"a/": "x/"}, "b/c", "b/c"),
    ("prefix_is_a_scope", {"a/": "x/"}, "ab/c", "ab/c"),
    (
      "regex_first_match",
      [(r"^tower_\d+/", ""), ("dense", "fc")],
      "tower_3/dense/kernel",
      "dense/kernel",
    ),
    (
      "regex_second",
      [(r"^tower_\d+/", ""), ("dense", "fc")],
      "dense/kernel",
      "fc/kernel",
    ),
    (
      "regex_groups",
      [(r"^layer_(\d+)/", r"block\1/")],
      "layer_2/w",
      "block2/w",
    ),
    ("none", None, "a", "a"),
  )
  def test_rename(self, spec, name, expected):
    self.assertEqual(rename_rules.parse(spec)(name), expected)

  @parameterized.named_parameters(
    ("scope_to_name", {"a/": "b"}, "must be one too"),
    ("empty_key", {"": "b/"}, "root scope"),
    ("bad_regex", [("(", "x")], "does not compile"),
    ("not_pair", [("a",)], r"not a \(regex, replacement\) pair"),
    ("bad_type", 3, "must be a dict"),
  )
  def test_bad_specs(self, spec, fragment):
    with self.assertRaisesRegex(errors.InvalidRenameError, fragment):
      rename_rules.parse(spec)
    self.assertTrue(issubclass(errors.InvalidRenameError, errors.Error))

  @parameterized.named_parameters(
    ("exact", {"a/": "x/", "a/b": "c"}, "a/b", "a/b"),
    ("longest_prefix", {"a/": "x/", "a/b/": "y/"}, "a/b/c", "a/b/"),
    ("root", {"/": "backbone/"}, "w", "/"),
    ("regex", [(r"^tower_\d+/", ""), ("dense", "fc")], "dense/kernel", "dense"),
    ("unmatched", {"a/": "x/"}, "b/c", None),
  )
  def test_matching_rule(self, spec, name, rule):
    renamer = rename_rules.parse(spec)
    self.assertEqual(renamer.matching_rule(name), rule)
    if rule is not None:
      self.assertIn(rule, renamer.rules())

  def test_flag_values(self):
    renamer = rename_rules.parse_flag_values(["tower/=", "old=new"])
    self.assertEqual(renamer("tower/w"), "w")
    self.assertEqual(renamer("old"), "new")
    with self.assertRaisesRegex(errors.InvalidRenameError, "tower/="):
      rename_rules.parse_flag_values(["nope"])


if __name__ == "__main__":
  absltest.main()
