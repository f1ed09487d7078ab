#!/usr/bin/env bash
# docs/img/report-top.png: the top of the demo report (summary table and heat legend) as chromium draws it.
#
#   scripts/report_screenshot.sh [OUT.png] [DEMO_OUT]
#
# Runs `ase-mllm demo --out DEMO_OUT` (default: a temporary folder) on the shipped starter model with a daemon of
# its own (socket, store and config in a temporary folder; stopped at the end), unless DEMO_OUT already holds a
# report.html, then screenshots the report's top with headless chromium (Debian: apt-get install chromium).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="$(realpath -m "${1:-$ROOT/docs/img/report-top.png}")"
WORK="$(mktemp -d /tmp/ase-report-shot.XXXXXX)"
DEMO="$(realpath -m "${2:-$WORK/demo}")"
ENDPOINT="ipc://$WORK/daemon.sock"
CHROMIUM="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$CHROMIUM" ] || { echo "chromium not found (apt-get install chromium)" >&2; exit 2; }
cleanup() {
  "$PY" -c "from ase_daemon.client import Client; Client('$ENDPOINT', timeout=5, retries=0).shutdown()" \
    >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

export XDG_RUNTIME_DIR="$WORK/run" XDG_DATA_HOME="$WORK/data" XDG_CONFIG_HOME="$WORK/config"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset ASE_ENDPOINT ASE_MODEL
if [ ! -f "$DEMO/report.html" ]; then
  "$PY" -m ase_daemon.mllm_cli demo --out "$DEMO" --endpoint "$ENDPOINT"
fi
"$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$WORK/chromium" \
  --window-size=1280,900 --screenshot="$OUT" "file://$DEMO/report.html" 2>/dev/null
echo "$OUT"
