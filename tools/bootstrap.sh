#!/usr/bin/env bash
# Installs what this workspace needs, once: Debian's Bazel 4.2.3 with the
# rules it loads offline, and the project venv (.venv) from requirements.txt
# (the package's dependencies), requirements-dev.txt (lint and type check) and
# requirements-test.txt (test-only: tensorflow-io and moto for the S3 test).
#
# Idempotent and fast when nothing is missing: it only checks files and a
# hash of the requirements files. Safe to run before every command.
set -euo pipefail

readonly WORKSPACE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly VENV="${WORKSPACE_DIR}/.venv"
readonly REQUIREMENTS="${WORKSPACE_DIR}/requirements.txt"
readonly DEV_REQUIREMENTS="${WORKSPACE_DIR}/requirements-dev.txt"
readonly TEST_REQUIREMENTS="${WORKSPACE_DIR}/requirements-test.txt"
readonly STAMP="${VENV}/.requirements.sha256"
# openssl makes the GCS test's throwaway certificate authority.
readonly DEBIAN_PACKAGES=(bazel-bootstrap bazel-rules-java bazel-platforms
                          openssl)
# Files that prove each Debian package is installed (see WORKSPACE).
readonly DEBIAN_MARKERS=(/usr/bin/bazel /usr/share/bazel/rules/java/WORKSPACE
                         /usr/share/bazel/tools/platforms/WORKSPACE
                         /usr/bin/openssl)

log() { echo "bootstrap: $*" >&2; }

as_root() {
  if [[ "$(id -u)" == 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    log "need root to run: $*"
    log "install ${DEBIAN_PACKAGES[*]} by hand, then rerun."
    exit 1
  fi
}

install_debian_packages() {
  local marker
  for marker in "${DEBIAN_MARKERS[@]}"; do
    if [[ ! -e "${marker}" ]]; then
      log "installing ${DEBIAN_PACKAGES[*]} (missing ${marker})"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
      as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${DEBIAN_PACKAGES[@]}" \
        >/dev/null
      return
    fi
  done
}

pick_python() {
  # TensorFlow 2.15 has wheels for CPython 3.9 to 3.11.
  local candidate
  for candidate in python3.11 python3.10 python3.9 python3; do
    if command -v "${candidate}" >/dev/null &&
       "${candidate}" -c 'import sys; sys.exit(not (3, 9) <= sys.version_info[:2] <= (3, 11))'; then
      command -v "${candidate}"
      return
    fi
  done
  log "need CPython 3.9-3.11 for TensorFlow 2.15; none found on PATH."
  exit 1
}

install_venv() {
  local want
  want="$(cat "${REQUIREMENTS}" "${DEV_REQUIREMENTS}" "${TEST_REQUIREMENTS}" |
          sha256sum | cut -d' ' -f1)"
  if [[ -x "${VENV}/bin/python3" && -f "${STAMP}" &&
        "$(cat "${STAMP}")" == "${want}" ]]; then
    return
  fi
  if [[ ! -x "${VENV}/bin/python3" ]]; then
    log "creating ${VENV}"
    "$(pick_python)" -m venv "${VENV}"
  fi
  log "installing requirements.txt, requirements-dev.txt and" \
      "requirements-test.txt into ${VENV} (a few minutes the first time)"
  "${VENV}/bin/python3" -m pip install --quiet --disable-pip-version-check \
    -r "${REQUIREMENTS}" -r "${DEV_REQUIREMENTS}" -r "${TEST_REQUIREMENTS}"
  echo "${want}" > "${STAMP}"
}

install_debian_packages
install_venv
