#!/usr/bin/env bash
# The Python client compatibility suite (tests/python): the real `stele`
# binary driven by confluent-kafka, kafka-python, aiokafka and kcat (when
# installed). Creates target/python-venv (reused when present and its pinned
# requirements are unchanged), builds the broker, runs pytest.
#
#   ./scripts/test-python.sh                 # everything
#   ./scripts/test-python.sh -k kcat -x      # extra arguments go to pytest
#
# STELE_BIN overrides the broker binary (default target/debug/stele; then
# nothing is built). Needs python3 with the venv module (Debian: python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

root=$PWD
venv=${STELE_PYTHON_VENV:-$root/target/python-venv}
requirements=$root/tests/python/requirements.txt
python=${PYTHON:-python3}

if ! command -v "$python" >/dev/null 2>&1; then
  echo "test-python.sh: $python is required" >&2
  exit 1
fi

stamp=$venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x $venv/bin/python ]] || [[ $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
  echo "test-python.sh: installing tests/python/requirements.txt into $venv"
  if [[ ! -x $venv/bin/python ]]; then
    rm -rf "$venv"
    if ! "$python" -m venv "$venv"; then
      echo "test-python.sh: '$python -m venv' failed; install python3-venv (apt-get install python3-venv)" >&2
      exit 1
    fi
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
fi

if [[ -z ${STELE_BIN:-} ]]; then
  cargo build -p stele-broker
  export STELE_BIN=$root/target/debug/stele
fi

if ! command -v kcat >/dev/null 2>&1; then
  echo "test-python.sh: kcat not installed; its tests are skipped (apt-get install kcat)"
fi

cd tests/python
exec "$venv/bin/python" -m pytest "$@"
