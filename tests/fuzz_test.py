r"""Seeded mutation fuzzing of the checkpoint tools (issue 14).

Each case copies a golden checkpoint (testdata/), damages it in one way
(`checkpoint_mutator`: raw `.index` bytes, block handles, entries re-encoded
with valid checksums, data files, object graphs, `checkpoint` state files,
FIFOs and /dev/zero in place of files), then runs every public checkpoint
tool on it: `checkpoint_format`, `list_variables`, `load_variable` (each
listed variable and a raw key), `verify`, and `convert` to TF1 and to TF2
into a fresh destination. The contract:

- every call succeeds or raises an `estimator_ckpt.errors.Error`, whose
  message names the damaged file (path or base name; for damage inside an
  index, the checkpoint's full prefix will do; `VariableNotFoundError`, about
  the argument, is exempt);
- no call hangs (FIFOs) or runs out of memory (/dev/zero) under a 2 GiB
  address-space limit;
- a failed `convert` leaves its destination as it was (absent, or holding
  what it held, with no hidden `.*convert-tmp-*` staging directory);
- the source is never modified (every file's hash, before and after);
- what the reader accepts is self-consistent: every listed variable loads
  with its listed shape (and, once `verify` passed, without error), and a
  successful conversion of a verified source verifies against it with the
  same names, shapes and values. (TensorFlow is not the oracle: it aborts the
  process on some damaged inputs, and importing it costs seconds.)

Cases run in worker subprocesses (a few dozen each, four at a time), each
call under a SIGALRM time limit, with a watchdog that kills a silent worker;
the case that was running is then the culprit and the rest run in a new
worker. The test fails listing each distinct failure (kind, problem,
exception class, location) with the seed and case number that reproduce it.

The default run (500 cases, fixed `--fuzz_seed`) takes about 15 s on two
cores when every case passes; each hang adds `--fuzz_call_timeout` (8 s) to
its worker, each read of /dev/zero up to the memory limit 2-5 s (about 75 s
in all while the library still hangs on FIFOs). A longer run:

  tools/bazel test //tests:fuzz_test --test_arg=--fuzz_cases=20000 \
      --test_timeout=3600

One case, e.g. to debug a reported failure:

  tools/bazel test //tests:fuzz_test --test_output=errors \
      --test_arg=--fuzz_seed=14 --test_arg=--fuzz_case=123
"""

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import flags
from absl import logging
from absl.testing import absltest
import numpy as np

import estimator_ckpt
from estimator_ckpt import errors

from tests import checkpoint_mutator
from tests import tool_fixtures

_FUZZ_CASES = flags.DEFINE_integer(
  "fuzz_cases",
  500,
  "How many mutated checkpoints to run (about 0.1 s of one core each; a "
  "hang costs --fuzz_call_timeout).",
)
_FUZZ_SEED = flags.DEFINE_integer(
  "fuzz_seed", 14, "Seed of every case's mutation; fixed so CI reproduces."
)
_FUZZ_CASE = flags.DEFINE_integer(
  "fuzz_case", None, "Run only this case number (with --fuzz_seed)."
)
_FUZZ_CALL_TIMEOUT = flags.DEFINE_float(
  "fuzz_call_timeout",
  8.0,
  "Seconds one call may take before it counts as a hang (reading "
  "/dev/zero up to the memory limit takes 2-5 s).",
)
_FUZZ_KEEP_GOING = flags.DEFINE_boolean(
  "fuzz_keep_going",
  False,
  "After a call of a case hangs or runs out of memory, make the case's "
  "later calls anyway (each may take --fuzz_call_timeout).",
)
_FUZZ_WORKERS = flags.DEFINE_integer(
  "fuzz_workers",
  min(2 * (os.cpu_count() or 1), 4),
  "Worker processes at once: twice the cores (up to 4), as a hanging case "
  "sleeps until its time limit.",
)
_FUZZ_BATCH_SIZE = flags.DEFINE_integer(
  "fuzz_batch_size", 40, "Cases per worker process."
)
_FUZZ_MEMORY_LIMIT_MIB = flags.DEFINE_integer(
  "fuzz_memory_limit_mib",
  2048,
  "Address-space limit (RLIMIT_AS) of the worker processes.",
)

# How a worker starts: the test module itself, imported (flags unparsed).
_WORKER = "from tests import fuzz_test; fuzz_test.worker_main()"
# Variables loaded per case (the ranking golden has 29).
_MAX_LOADS = 40
_STAGING_TAG = "convert-tmp-"

# Problem names.
_UNEXPECTED = "unexpected exception"
_MEMORY = "memory error"
_HANG = "hang"
_CRASH = "worker crashed"
_NO_FILE = "message names no damaged file"
_LEFTOVER = "leftover at destination"
_SOURCE_MODIFIED = "source modified"
_INCONSISTENT = "inconsistent"
_MUTATOR = "mutator failed"


@dataclasses.dataclass(frozen=True)
class CasePlan:
  """What case `case` of seed `seed` does, derived from both alone."""

  seed: int
  case: int
  golden: str
  kind: str

  def rng(self) -> random.Random:
    return random.Random(f"{self.seed}/{self.case}")


def case_plan(seed: int, case: int) -> CasePlan:
  """The kind in turn (each once per len(KINDS) cases), a golden by the seed.

  The golden is one of those the kind applies to.
  """
  kind = checkpoint_mutator.KINDS[case % len(checkpoint_mutator.KINDS)]
  goldens = (
    tool_fixtures.TF2_GOLDENS
    if kind in checkpoint_mutator.TF2_ONLY_KINDS
    else tuple(tool_fixtures.GOLDENS)
  )
  golden = random.Random(f"{seed}/{case}/golden").choice(goldens)
  return CasePlan(seed, case, golden, kind)


@dataclasses.dataclass(frozen=True)
class Settings:
  """How cases run (all but `seed` from flags of the same names).

  Attributes:
    seed: Of every case's mutation.
    call_timeout: Seconds per call before it counts as a hang.
    memory_limit_mib: RLIMIT_AS of each worker.
    keep_going: Run a case's later calls after a hang or memory error.
  """

  seed: int
  call_timeout: float = 8.0
  memory_limit_mib: int = 2048
  keep_going: bool = False


# The worker (a subprocess) ----------------------------------------------------


class _SkippedError(Exception):
  """A call not made: an earlier call of the case hung or ran out of memory."""


class _CallTimeout(BaseException):
  """A call ran past its time limit (SIGALRM).

  A BaseException, so that no `except Exception` in the library swallows it.
  """


def _on_alarm(signum: int, frame: Any) -> None:
  del signum, frame
  raise _CallTimeout()


@dataclasses.dataclass
class _Outcome:
  value: Any = None
  error: Optional[BaseException] = None

  @property
  def ok(self) -> bool:
    return self.error is None


def _timed(function: Callable[[], Any], timeout: float) -> _Outcome:
  """Calls `function`; any exception is its outcome.

  A SIGALRM after `timeout` seconds raises `_CallTimeout`, also out of a
  blocking `open` of a FIFO.
  """
  try:
    try:
      signal.setitimer(signal.ITIMER_REAL, timeout)
      return _Outcome(value=function())
    finally:
      signal.setitimer(signal.ITIMER_REAL, 0)
  except KeyboardInterrupt:
    raise
  except BaseException as e:  # pylint: disable=broad-except  (the point)
    if isinstance(e, _CallTimeout) and e.__context__ is not None:
      # The alarm went off while the call's own exception unwound (a slow
      # MemoryError): that exception is the outcome.
      return _Outcome(error=e.__context__)
    return _Outcome(error=e)


def _location(error: BaseException) -> Tuple[str, str]:
  """Where an exception came from: (`file:function`, `file:line`).

  The innermost frame in estimator_ckpt (else the innermost frame), its path
  from `estimator_ckpt/`.
  """
  marker = f"{os.sep}estimator_ckpt{os.sep}"
  frames = list(traceback.extract_tb(error.__traceback__))
  ours = [f for f in frames if marker in f.filename]
  if not frames:
    return "?", "?"
  frame = (ours or frames)[-1]
  path = frame.filename
  if marker in path:
    path = "estimator_ckpt/" + path.rsplit(marker, 1)[1]
  else:
    path = os.path.basename(path)
  return f"{path}:{frame.name}", f"{path}:{frame.lineno}"


def _frames(error: BaseException) -> List[str]:
  """The innermost frames below this harness, one line each."""
  frames = list(traceback.extract_tb(error.__traceback__))
  while frames and os.path.abspath(frames[0].filename) == os.path.abspath(
    __file__
  ):
    frames = frames[1:]
  return [
    f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}"
    for f in frames[-6:]
  ]


def _tree_state(root: str) -> Dict[str, str]:
  """Every path under `root`: its type, and mode and SHA-256 for files.

  Opens nothing but regular files (opening a FIFO would block).
  """
  state = {}
  for directory, names, files in os.walk(root):
    for name in names + files:
      path = os.path.join(directory, name)
      info = os.lstat(path)
      relative = os.path.relpath(path, root)
      if stat.S_ISLNK(info.st_mode):
        state[relative] = f"link -> {os.readlink(path)}"
      elif stat.S_ISDIR(info.st_mode):
        state[relative] = f"dir {stat.S_IMODE(info.st_mode):o}"
      elif stat.S_ISREG(info.st_mode):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
          for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
        state[relative] = (
          f"file {stat.S_IMODE(info.st_mode):o} {digest.hexdigest()}"
        )
      else:
        state[relative] = f"special {info.st_mode:o}"
  return state


def _state_difference(before: Dict[str, str], after: Dict[str, str]) -> str:
  added = sorted(set(after) - set(before))
  removed = sorted(set(before) - set(after))
  changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
  parts = [
    f"{what} {errors.format_names(paths, limit=4)}"
    for what, paths in (
      ("added", added),
      ("removed", removed),
      ("changed", changed),
    )
    if paths
  ]
  return "; ".join(parts)


def _same_value(a: np.ndarray, b: np.ndarray) -> bool:
  if a.dtype != b.dtype or a.shape != b.shape:
    return False
  if a.dtype == object:
    return a.tolist() == b.tolist()
  return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


class _Case:
  """Runs one case in the worker, recording problems."""

  def __init__(
    self,
    plan: CasePlan,
    work_dir: str,
    settings: Settings,
    emit: Callable[[Dict[str, Any]], None],
  ):
    self.plan = plan
    self.call_timeout = settings.call_timeout
    self.emit = emit
    self.problems: List[Dict[str, Any]] = []
    self.outcomes: Dict[str, str] = {}
    self.case_dir = os.path.join(work_dir, f"case-{plan.case}")
    self.mutation: Optional[checkpoint_mutator.Mutation] = None
    self.keep_going = settings.keep_going
    self.stopped = False

  def problem(
    self,
    label: str,
    call: str,
    problem: str,
    error: Optional[BaseException] = None,
    detail: str = "",
  ) -> None:
    record: Dict[str, Any] = {
      "label": label,
      "call": call,
      "problem": problem,
      "detail": detail,
    }
    if error is not None:
      signature, line = _location(error)
      record.update(
        exception=type(error).__name__,
        message=str(error)[:600],
        location=signature,
        line=line,
        frames=_frames(error),
      )
    self.problems.append(record)

  def call(
    self,
    label: str,
    name: str,
    function: Callable[[], Any],
    check_message: bool = True,
  ) -> _Outcome:
    """Runs one call under the time limit and classifies its outcome.

    Args:
      label: The call, for the outcome table and the report.
      name: The call with its arguments, for the report.
      function: What to run.
      check_message: Require an `errors.Error` to name a damaged file.

    Returns:
      Its outcome; after a hang or memory error (the case has failed, and
      a FIFO or /dev/zero fails every later call the same way, slowly), the
      later calls of the case are skipped unless --fuzz_keep_going.
    """
    if self.stopped:
      return _Outcome(error=_SkippedError())
    self.emit({"event": "call", "call": name})
    outcome = _timed(function, self.call_timeout)
    error = outcome.error
    if error is not None or label not in self.outcomes:  # ok if all are.
      self.outcomes[label] = "ok" if error is None else type(error).__name__
    if error is None:
      pass
    elif isinstance(error, _CallTimeout):
      self.problem(
        label,
        name,
        _HANG,
        error,
        f"still running after {self.call_timeout:g} s",
      )
      self.stopped = not self.keep_going
    elif isinstance(error, MemoryError):
      self.problem(label, name, _MEMORY, error)
      self.stopped = not self.keep_going
    elif not isinstance(error, errors.Error):
      self.problem(label, name, _UNEXPECTED, error)
    elif check_message and not isinstance(error, errors.VariableNotFoundError):
      # A missing variable is about the argument, not the damage.
      if not self._names_damage(str(error)):
        self.problem(
          label,
          name,
          _NO_FILE,
          error,
          "expected one of "
          + errors.format_names(
            os.path.basename(p) for p in self.mutation.blame
          )
          if self.mutation
          else "",
        )
    return outcome

  def _names_damage(self, message: str) -> bool:
    """Whether a message names a damaged file (by path or base name).

    For damage inside an index, naming the checkpoint (its full prefix) will
    do.
    """
    mutation = self.mutation
    assert mutation is not None
    if any(
      p in message or os.path.basename(p) in message for p in mutation.blame
    ):
      return True
    return mutation.prefix is not None and mutation.prefix in message

  def run(self) -> None:
    """Copies and damages the golden, then makes every call on it."""
    plan = self.plan
    rng = plan.rng()
    src_root = os.path.join(self.case_dir, "src")
    os.makedirs(src_root)
    path = tool_fixtures.copy_golden(plan.golden, src_root)
    raw_keys = sorted(
      tool_fixtures.entries(checkpoint_mutator.latest_prefix(path))
    )
    raw_key = rng.choice([k for k in raw_keys if k] or [b"x"])
    try:
      self.mutation = checkpoint_mutator.mutate(path, rng, plan.kind)
    except Exception as e:  # pylint: disable=broad-except  (our own bug)
      self.emit({"event": "mutated", "description": f"{plan.kind}: ?"})
      self.problem("mutate", "mutate", _MUTATOR, e)
      return
    self.emit({"event": "mutated", "description": self.mutation.description})
    model_dir = path if os.path.isdir(path) else os.path.dirname(path)
    src = (
      model_dir
      if plan.kind.startswith("state_") or rng.random() < 0.3
      else path
    )
    source_state = [_tree_state(src_root)]

    def call(label: str, name: str, function: Callable[[], Any]) -> _Outcome:
      """A call on the source, which must stay as it was."""
      outcome = self.call(label, name, function)
      after = _tree_state(src_root)
      if after != source_state[0]:
        self.problem(
          label,
          name,
          _SOURCE_MODIFIED,
          detail=_state_difference(source_state[0], after),
        )
        source_state[0] = after
      return outcome

    call(
      "checkpoint_format",
      "checkpoint_format(src)",
      lambda: estimator_ckpt.checkpoint_format(src),
    )
    listed = call(
      "list_variables",
      "list_variables(src)",
      lambda: estimator_ckpt.list_variables(src),
    )
    loaded: Dict[str, np.ndarray] = {}
    load_errors: Dict[str, BaseException] = {}
    for name, shape in (listed.value or [])[:_MAX_LOADS]:
      outcome = call(
        "load_variable",
        f"load_variable(src, {name!r})",
        functools.partial(estimator_ckpt.load_variable, src, name),
      )
      if outcome.ok:
        loaded[name] = outcome.value
        if list(np.shape(outcome.value)) != list(shape):
          self.problem(
            "load_variable",
            f"load_variable(src, {name!r})",
            _INCONSISTENT,
            detail=(
              f"listed with shape {shape}, loaded with "
              f"{list(np.shape(outcome.value))}"
            ),
          )
      elif outcome.error is not None:
        load_errors[name] = outcome.error
        if isinstance(outcome.error, errors.VariableNotFoundError):
          self.problem(
            "load_variable",
            f"load_variable(src, {name!r})",
            _INCONSISTENT,
            outcome.error,
            "list_variables listed it",
          )
    key_text = raw_key.decode("utf-8", "surrogateescape")
    call(
      "load_variable(raw key)",
      f"load_variable(src, {key_text!r})",
      lambda: estimator_ckpt.load_variable(src, key_text),
    )
    verified = call("verify", "verify(src)", lambda: estimator_ckpt.verify(src))
    if verified.ok:
      for name, error in load_errors.items():
        # A valid checkpoint may hold a tensor numpy cannot represent (an
        # empty shape whose other dimensions multiply past 2^63, such as
        # [0, 2^40, 2^40]): verify passes, loading it is a named error.
        if isinstance(error, errors.IncompatibleCheckpointError) and (
          "numpy cannot represent" in str(error)
        ):
          continue
        if isinstance(error, errors.Error):  # Others are failures already.
          self.problem(
            "load_variable",
            f"load_variable(src, {name!r})",
            _INCONSISTENT,
            error,
            "verify(src) passed",
          )
    for to in ("tf1", "tf2"):
      self._convert(src, to, rng, listed, loaded, verified.ok, call)

  def _convert(
    self,
    src: str,
    to: str,
    rng: random.Random,
    listed: _Outcome,
    loaded: Dict[str, np.ndarray],
    verified: bool,
    call: Callable[..., _Outcome],
  ) -> None:
    """Converts; checks the destination and, if verified, the variables.

    A failed conversion must leave the destination as it was; a successful
    one of a source that `verify` passed must hold the same variables and
    values.
    """
    parent = os.path.join(self.case_dir, f"dst-{to}")
    os.makedirs(parent)
    dst = os.path.join(parent, "out")
    layout = rng.choice(["new", "empty", "nonempty"])
    if layout != "new":
      os.mkdir(dst)
    if layout == "nonempty":
      with open(os.path.join(dst, "notes.txt"), "w") as f:
        f.write("not a checkpoint\n")
    link = rng.random() < 0.25
    all_checkpoints = os.path.isdir(src) and rng.random() < 0.7
    before = _tree_state(parent)
    label = f"convert(to={to})"
    name = (
      f"convert(src, {layout} dst, to={to!r}, link={link}, "
      f"all_checkpoints={all_checkpoints})"
    )
    converted = call(
      label,
      name,
      lambda: estimator_ckpt.convert(
        src, dst, to=to, link=link, all_checkpoints=all_checkpoints
      ),
    )
    after = _tree_state(parent)
    if not converted.ok:
      if after != before and not isinstance(converted.error, _SkippedError):
        self.problem(
          label,
          name,
          _LEFTOVER,
          converted.error,
          _state_difference(before, after),
        )
      return
    staging = [p for p in after if _STAGING_TAG in p]
    if staging:
      self.problem(label, name, _LEFTOVER, detail=f"staging left: {staging}")
    if not verified:
      return
    # What the reader accepted converts to the same variables and values.
    label = f"dst of convert(to={to})"
    checked = self.call(
      label,
      "verify(dst, against=src)",
      lambda: estimator_ckpt.verify(dst, against=src),
      check_message=False,
    )
    if not checked.ok and isinstance(checked.error, errors.Error):
      self.problem(
        label,
        "verify(dst, against=src)",
        _INCONSISTENT,
        checked.error,
        "verify(src) passed",
      )
    names = self.call(
      label,
      "list_variables(dst)",
      lambda: estimator_ckpt.list_variables(dst),
      check_message=False,
    )
    if names.ok and listed.ok and names.value != listed.value:
      self.problem(
        label,
        "list_variables(dst)",
        _INCONSISTENT,
        detail=(
          f"source lists {listed.value[:4]}..., destination "
          f"{names.value[:4]}..."
        ),
      )
    for variable, value in loaded.items():
      name = f"load_variable(dst, {variable!r})"
      outcome = self.call(
        label,
        name,
        functools.partial(estimator_ckpt.load_variable, dst, variable),
        check_message=False,
      )
      if outcome.ok and not _same_value(outcome.value, value):
        self.problem(
          label,
          name,
          _INCONSISTENT,
          detail=(
            f"differs: {outcome.value!r:.80} vs {value!r:.80} in the source"
          ),
        )
      elif not outcome.ok and isinstance(outcome.error, errors.Error):
        self.problem(label, name, _INCONSISTENT, outcome.error)


def worker_main() -> None:
  """Runs the cases given as JSON on stdin; appends JSON lines to a file."""
  spec = json.load(sys.stdin)
  settings = Settings(
    spec["seed"],
    spec["call_timeout"],
    spec["memory_limit_mib"],
    spec["keep_going"],
  )
  limit = settings.memory_limit_mib << 20
  resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
  logging.set_verbosity(logging.ERROR)
  signal.signal(signal.SIGALRM, _on_alarm)
  with open(spec["results"], "a", encoding="utf-8") as results:
    for case in spec["cases"]:
      plan = case_plan(settings.seed, case)

      def emit(record: Dict[str, Any], case: int = case) -> None:
        results.write(json.dumps({"case": case, **record}) + "\n")
        results.flush()

      emit({"event": "start"})
      runner = _Case(plan, spec["work_dir"], settings, emit)
      try:
        runner.run()
      except Exception as e:  # pylint: disable=broad-except  (harness bug)
        runner.problem("harness", "harness", _UNEXPECTED, e)
      emit(
        {
          "event": "done",
          "problems": runner.problems,
          "outcomes": runner.outcomes,
        }
      )
      shutil.rmtree(runner.case_dir, ignore_errors=True)
  # Not a normal exit: a library thread stuck on a FIFO would block it.
  os._exit(0)


# The parent: batches of cases in workers, a watchdog per worker --------------


@dataclasses.dataclass
class _CaseResult:
  plan: CasePlan
  description: str = ""
  problems: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
  outcomes: Dict[str, str] = dataclasses.field(default_factory=dict)


def _read_events(path: str) -> List[Dict[str, Any]]:
  events = []
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        try:
          events.append(json.loads(line))
        except ValueError:
          break  # A line cut short by a kill.
  except FileNotFoundError:
    pass
  return events


def _run_worker(
  settings: Settings, cases: Sequence[int], work_dir: str, number: int
) -> Tuple[Dict[int, _CaseResult], str]:
  """Runs cases in one worker until it finishes, dies or goes silent.

  Returns:
    The finished cases, with a started-but-unfinished one (the culprit)
    recorded as a hang or crash; and the worker's stderr.
  """
  results = os.path.join(work_dir, f"worker-{number}.jsonl")
  stderr_path = os.path.join(work_dir, f"worker-{number}.stderr")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
  spec = dict(
    dataclasses.asdict(settings),
    cases=list(cases),
    work_dir=work_dir,
    results=results,
  )
  # A silent worker is stuck where SIGALRM cannot reach (in C code).
  watchdog = 2 * settings.call_timeout + 30
  with open(stderr_path, "wb") as stderr:
    process = subprocess.Popen(
      [sys.executable, "-c", _WORKER],
      stdin=subprocess.PIPE,
      stdout=subprocess.DEVNULL,
      stderr=stderr,
      env=env,
      start_new_session=True,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(spec).encode())
    process.stdin.close()
    last_size, last_change, killed = -1, time.monotonic(), False
    while process.poll() is None:
      time.sleep(0.05)
      size = os.path.getsize(results) if os.path.exists(results) else 0
      if size != last_size:
        last_size, last_change = size, time.monotonic()
      elif time.monotonic() - last_change > watchdog:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        killed = True
  with open(stderr_path, "rb") as f:
    stderr_text = f.read()[-3000:].decode("utf-8", "replace")
  finished: Dict[int, _CaseResult] = {}
  current: Optional[_CaseResult] = None
  last_call = "?"
  for event in _read_events(results):
    case = event["case"]
    if event["event"] == "start":
      current = _CaseResult(case_plan(settings.seed, case))
      last_call = "setup"
    elif current is None:
      continue  # Not reached: every case starts with "start".
    elif event["event"] == "mutated":
      current.description = event["description"]
    elif event["event"] == "call":
      last_call = event["call"]
    elif event["event"] == "done":
      current.problems = event["problems"]
      current.outcomes = event["outcomes"]
      finished[case] = current
      current = None
  if current is not None:
    if killed:
      problem = dict(
        call=last_call,
        problem=_HANG,
        exception="(killed)",
        location="?",
        line="?",
        message="",
        detail=f"no progress for {watchdog:.0f} s, killed",
      )
    else:
      problem = dict(
        call=last_call,
        problem=_CRASH,
        exception=f"exit status {process.returncode}",
        location="?",
        line="?",
        message=stderr_text[-600:],
        detail="",
      )
    current.problems = [problem]
    finished[current.plan.case] = current
  return finished, stderr_text


def run_cases(
  settings: Settings,
  cases: Sequence[int],
  work_dir: str,
  *,
  workers: int,
  batch_size: int,
) -> List[_CaseResult]:
  """Runs every case; a dead or stuck worker costs only its current case."""
  batches = [
    list(cases[i : i + batch_size]) for i in range(0, len(cases), batch_size)
  ]
  counter = iter(range(10**9))

  def run_batch(batch: List[int]) -> List[_CaseResult]:
    done: Dict[int, _CaseResult] = {}
    while len(done) < len(batch):
      remaining = [c for c in batch if c not in done]
      finished, stderr = _run_worker(
        settings, remaining, work_dir, next(counter)
      )
      if not finished:
        raise RuntimeError(f"a fuzz worker ran no case:\n{stderr}")
      done.update(finished)
    return [done[c] for c in batch]

  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    return [r for rs in pool.map(run_batch, batches) for r in rs]


# Reporting --------------------------------------------------------------------


def _signature(result: _CaseResult, problem: Dict[str, Any]) -> Tuple[str, ...]:
  return (
    result.plan.kind,
    problem["problem"],
    problem.get("exception", ""),
    problem.get("location", ""),
  )


def _reproduction(seed: int, case: int) -> str:
  return (
    "tools/bazel test //tests:fuzz_test --test_output=errors "
    f"--test_arg=--fuzz_seed={seed} --test_arg=--fuzz_case={case}"
  )


def report(results: Sequence[_CaseResult], seed: int) -> str:
  """The distinct failures, most frequent first, each with a case to rerun."""
  groups: Dict[Tuple[str, ...], List[Tuple[_CaseResult, Dict[str, Any]]]] = (
    collections.defaultdict(list)
  )
  for result in results:
    for problem in result.problems:
      groups[_signature(result, problem)].append((result, problem))
  failing = {r.plan.case for r in results if r.problems}
  lines = [
    f"{len(groups)} distinct failures in {len(failing)} of "
    f"{len(results)} cases (seed {seed}):",
    "",
  ]
  ordered = sorted(
    groups.items(),
    key=lambda item: (-len({r.plan.case for r, _ in item[1]}), item[0]),
  )
  for number, (signature, members) in enumerate(ordered, 1):
    kind, problem_name, exception, location = signature
    result, problem = members[0]
    cases = sorted({r.plan.case for r, _ in members})
    calls = sorted({p.get("label", p["call"]) for _, p in members})
    lines += [
      f"{number}. [{kind}] {problem_name}: {exception or '-'} at "
      f"{problem.get('line') or location or '-'} ({len(cases)} cases; "
      f"calls: {', '.join(calls)})",
      f"   case {result.plan.case} ({result.plan.golden}): "
      f"{result.description}",
      f"   call: {problem['call']}",
    ]
    if problem.get("message"):
      lines.append(f"   message: {problem['message'][:400]!r}")
    if problem.get("detail"):
      lines.append(f"   detail: {problem['detail'][:400]}")
    if problem.get("frames"):
      lines.append(f"   frames: {' <- '.join(reversed(problem['frames']))}")
    lines.append(f"   reproduce: {_reproduction(seed, result.plan.case)}")
  first = min(failing) if failing else 0
  lines += ["", f"Reproduce one: {_reproduction(seed, first)}"]
  return "\n".join(lines)


def outcome_table(results: Sequence[_CaseResult]) -> str:
  """Per kind: cases, failed cases, and successes of each call.

  The successes show how far the damage got before a check caught it.
  """
  columns = [
    ("format", "checkpoint_format"),
    ("list", "list_variables"),
    ("load", "load_variable"),
    ("raw", "load_variable(raw key)"),
    ("verify", "verify"),
    ("to_tf1", "convert(to=tf1)"),
    ("to_tf2", "convert(to=tf2)"),
  ]
  by_kind: Dict[str, collections.Counter] = collections.defaultdict(
    collections.Counter
  )
  for result in results:
    counter = by_kind[result.plan.kind]
    counter["cases"] += 1
    counter["failed"] += bool(result.problems)
    for label, outcome in result.outcomes.items():
      counter[label] += outcome == "ok"
  header = ["kind".ljust(26), "cases", "failed"] + [c for c, _ in columns]
  lines = ["  " + " ".join(header)]
  for kind, counter in sorted(by_kind.items()):
    cells = [kind.ljust(26), f"{counter['cases']:5}", f"{counter['failed']:6}"]
    cells += [f"{counter[label]:{len(column)}}" for column, label in columns]
    lines.append("  " + " ".join(cells))
  return "\n".join(lines)


class FuzzTest(absltest.TestCase):
  def test_every_mutation_is_success_or_a_helpful_error(self):
    seed = _FUZZ_SEED.value
    cases = (
      [_FUZZ_CASE.value]
      if _FUZZ_CASE.value is not None
      else list(range(_FUZZ_CASES.value))
    )
    work_dir = self.create_tempdir().full_path
    start = time.monotonic()
    settings = Settings(
      seed,
      _FUZZ_CALL_TIMEOUT.value,
      _FUZZ_MEMORY_LIMIT_MIB.value,
      _FUZZ_KEEP_GOING.value,
    )
    results = run_cases(
      settings,
      cases,
      work_dir,
      workers=_FUZZ_WORKERS.value,
      batch_size=_FUZZ_BATCH_SIZE.value,
    )
    elapsed = time.monotonic() - start
    logging.info(
      "%d cases in %.1f s (%.0f ms each, %d workers); outcomes:\n%s",
      len(results),
      elapsed,
      1000 * elapsed / max(len(results), 1),
      _FUZZ_WORKERS.value,
      outcome_table(results),
    )
    self.assertLen(results, len(cases))
    if any(result.problems for result in results):
      self.fail(report(results, seed))


if __name__ == "__main__":
  absltest.main()
