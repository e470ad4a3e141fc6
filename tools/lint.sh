#!/usr/bin/env bash
# Format, lint and type checks, as .ci/run runs them before the tests; exits
# non-zero on any finding. `tools/lint.sh --fix` formats and applies ruff's
# safe fixes first (review the diff).
#
#   ruff format   Google Python style layout: 2-space indent, 80 columns
#   ruff check    pycodestyle, pyflakes, bugbear, naming, Google docstrings,
#                 Google import order (config: pyproject.toml [tool.ruff])
#   mypy          types of the package (config: pyproject.toml [tool.mypy])
#   bazel query   the TensorFlow-free core and the tools' binaries do not
#                 depend on //third_party/py:tensorflow
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly BIN=.venv/bin
status=0

if [[ "${1:-}" == "--fix" ]]; then
  "${BIN}/ruff" format .
  "${BIN}/ruff" check --fix .
fi

step() {
  local name="$1"
  shift
  if "$@"; then
    echo "lint: ${name}: ok"
  else
    echo "lint: ${name}: FAILED" >&2
    status=1
  fi
}

step "ruff format" "${BIN}/ruff" format --check --quiet .
step "ruff check" "${BIN}/ruff" check --quiet .
step "mypy" "${BIN}/mypy" --no-error-summary estimator_ckpt examples

tensorflow_free() {
  local path
  path="$(tools/bazel query --noshow_progress \
    'somepath(//estimator_ckpt/_src/format/... + //estimator_ckpt:inspect +
              //estimator_ckpt:convert + //estimator_ckpt:verify,
              //third_party/py:tensorflow)' 2>/dev/null)" || return 1
  if [[ -n "${path}" ]]; then
    echo "${path}" >&2
    return 1
  fi
}
step "TensorFlow-free tools" tensorflow_free

exit "${status}"
