"""Rename specs: how variable names in one place map to names in another.

One spec serves the warm-start bridge (current graph name -> name in the
checkpoint) and checkpoint conversion (source name -> destination name). A
spec is either

* a dict `{from: to}`. A key ending in `/` is a scope prefix:
  `{"tower/": ""}` maps `tower/dense/kernel` to `dense/kernel`, and the key
  `/` is the root scope: `{"/": "backbone/"}` maps `dense/kernel` to
  `backbone/dense/kernel`. Other keys match whole names. A whole-name match
  wins over prefixes; among prefixes the longest wins; or
* a sequence of `(regex, replacement)` pairs: the first regex that matches
  (`re.search`) rewrites the name with `re.sub(regex, replacement, name,
  count=1)`; later pairs are not tried.

Names no rule matches are unchanged.
"""

import dataclasses
import re
from typing import Mapping, Optional, Sequence, Tuple, Union

from estimator_ckpt import errors

RenameSpec = Union[Mapping[str, str], Sequence[Tuple[str, str]]]

_ROOT = "/"


@dataclasses.dataclass(frozen=True)
class Renamer:
  """A parsed, validated rename spec; call it on a name.

  Attributes:
    exact: Whole-name rules.
    prefixes: Scope rules `(from_prefix, to_prefix)`, longest first; the root
      scope is the empty prefix.
    patterns: Compiled `(regex, replacement)` rules, in order.
  """

  exact: Mapping[str, str] = dataclasses.field(default_factory=dict)
  prefixes: Tuple[Tuple[str, str], ...] = ()
  patterns: Tuple[Tuple["re.Pattern[str]", str], ...] = ()

  def __call__(self, name: str) -> str:
    if name in self.exact:
      return self.exact[name]
    for old, new in self.prefixes:
      if name.startswith(old):
        return new + name[len(old) :]
    for pattern, replacement in self.patterns:
      if pattern.search(name):
        return pattern.sub(replacement, name, count=1)
    return name

  def __bool__(self) -> bool:
    return bool(self.exact or self.prefixes or self.patterns)

  def matching_rule(self, name: str) -> Optional[str]:
    """The rule that `__call__` applies to `name`, or None if none does.

    Lets callers report rules that matched nothing (a misspelled scope
    silently renames nothing otherwise).

    Args:
      name: A name, as passed to `__call__`.

    Returns:
      The rule as the user wrote it: a whole name, a scope ending in `/` (the
      root scope is `/`), or a regex; None if `name` is left unchanged
      because no rule matches.
    """
    if name in self.exact:
      return name
    for old, _ in self.prefixes:
      if name.startswith(old):
        return old or _ROOT
    for pattern, _ in self.patterns:
      if pattern.search(name):
        return pattern.pattern
    return None

  def rules(self) -> Tuple[str, ...]:
    """Every rule, as `matching_rule` names them."""
    return (
      tuple(self.exact)
      + tuple(old or _ROOT for old, _ in self.prefixes)
      + tuple(pattern.pattern for pattern, _ in self.patterns)
    )


# What `parse` takes: a spec, or one already parsed.
RenameArg = Union[RenameSpec, Renamer]


def _scope(prefix: str) -> str:
  return "" if prefix == _ROOT else prefix


def parse(spec: Optional[Union[RenameSpec, "Renamer"]]) -> "Renamer":
  """Parses a rename spec (see the module docstring).

  Args:
    spec: None (no renaming), a dict, a sequence of `(regex, replacement)`
      pairs, or an already parsed `Renamer`.

  Returns:
    A `Renamer`.

  Raises:
    errors.InvalidRenameError: A scope key maps to a value that is not a
      scope, a regex does not compile, or the spec has another type.
  """
  if spec is None:
    return Renamer()
  if isinstance(spec, Renamer):
    return spec
  if isinstance(spec, Mapping):
    exact, prefixes = {}, []
    for old, new in spec.items():
      if not isinstance(old, str) or not isinstance(new, str):
        raise errors.InvalidRenameError(
          f"rename entry {old!r}: {new!r} must map a string to a string."
        )
      if old.endswith("/"):
        if new and not new.endswith("/"):
          raise errors.InvalidRenameError(
            f"rename entry `{old}` -> `{new}`: `{old}` is a scope (it ends "
            f"in `/`), so `{new}` must be one too. Write `{new}/`, or `` for "
            "the root scope."
          )
        prefixes.append((_scope(old), _scope(new)))
      else:
        if not old:
          raise errors.InvalidRenameError(
            "rename entry with an empty name: write `/` for the root scope."
          )
        exact[old] = new
    prefixes.sort(key=lambda rule: len(rule[0]), reverse=True)
    return Renamer(exact=exact, prefixes=tuple(prefixes))
  if isinstance(spec, (list, tuple)):
    patterns = []
    for rule in spec:
      if not (isinstance(rule, (list, tuple)) and len(rule) == 2):
        raise errors.InvalidRenameError(
          f"rename rule {rule!r} is not a (regex, replacement) pair."
        )
      try:
        patterns.append((re.compile(rule[0]), rule[1]))
      except re.error as e:
        raise errors.InvalidRenameError(
          f"rename regex `{rule[0]}` does not compile: {e}."
        ) from None
    return Renamer(patterns=tuple(patterns))
  raise errors.InvalidRenameError(
    f"rename spec {spec!r} must be a dict {{from: to}} or a list of "
    "(regex, replacement) pairs."
  )


def parse_flag_values(values: Sequence[str]) -> Renamer:
  """Parses repeated `from=to` flag values (e.g. `--warm_start_rename`).

  Raises:
    errors.InvalidRenameError: A value has no `=`.
  """
  spec = {}
  for value in values:
    old, sep, new = value.partition("=")
    if not sep:
      raise errors.InvalidRenameError(
        f"rename `{value}` is not `current=in_checkpoint`; write e.g. "
        "`tower/=` to drop the scope `tower/`."
      )
    spec[old] = new
  return parse(spec)
