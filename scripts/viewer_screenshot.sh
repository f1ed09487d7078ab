#!/usr/bin/env bash
# The README's viewer screenshot: a real X window under Xvfb, a real daemon, a real photo.
#
#   scripts/viewer_screenshot.sh [OUT.png] [PHOTO]   (default: docs/img/viewer.png; scikit-learn's china.jpg among
#                                                     the scikit-image/scikit-learn sample photos)
#
# Model: $ASE_MODEL if set, else the shipped starter model (ase_model/starter_model), else a tiny random one
# built with `ase-mllm build --tiny` (its critique is gibberish, but every part of the window is real).
# Needs: xvfb-run, xwd + ImageMagick's convert (to grab the X screen; without them Qt's own grab of the
# window is used), and the xcb libraries (apt-get install -y xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
OUT="$(realpath -m "${1:-$ROOT/docs/img/viewer.png}")"
PHOTO="${2:-}"
SIZE="1400x900"
WORK="$(mktemp -d /tmp/ase-viewer-shot.XXXXXX)"
DAEMON_PID=""
cleanup() {
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# everything of ours (socket, store, config, thumbnail cache) lives in $WORK: nothing touches the user's setup
export XDG_RUNTIME_DIR="$WORK/run" XDG_DATA_HOME="$WORK/data" XDG_CONFIG_HOME="$WORK/config" XDG_CACHE_HOME="$WORK/cache"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset ASE_ENDPOINT
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
ENDPOINT="ipc://$WORK/daemon.sock"

if [ -z "$PHOTO" ]; then  # a folder of real sample photos (so the strip has neighbours), showing the temple
  mkdir -p "$WORK/photos"
  "$PY" - "$WORK/photos" <<'EOP'
import sys
import skimage.data as d
from PIL import Image
from sklearn.datasets import load_sample_images
out = sys.argv[1]
for name, arr in zip(("china", "flower"), load_sample_images().images):
    Image.fromarray(arr).save(f"{out}/{name}.jpg", quality=95)
for name in ("astronaut", "chelsea", "coffee", "rocket"):
    Image.fromarray(getattr(d, name)()).convert("RGB").save(f"{out}/{name}.jpg", quality=95)
EOP
  PHOTO="$WORK/photos/china.jpg"
fi

MODEL="${ASE_MODEL:-}"
EXTRA=()
if [ -z "$MODEL" ]; then
  STARTER="$("$PY" -c "import importlib.util, pathlib; s = importlib.util.find_spec('ase_model'); print(pathlib.Path(s.submodule_search_locations[0]) / 'starter_model')")"
  if [ -f "$STARTER/config.json" ]; then
    MODEL="$STARTER"
  else
    echo "no starter model yet: building a tiny random one" >&2
    "$PY" -m ase_model.cli build --tiny --out "$WORK/tiny" >/dev/null
    MODEL="$WORK/tiny"
    EXTRA=(--max-new-tokens 48)  # random weights write noise: keep it to a paragraph
  fi
fi
echo "model: $MODEL" >&2

"$PY" -m ase_daemon.cli --model "$MODEL" --endpoint "$ENDPOINT" --db "$WORK/store.sqlite3" "${EXTRA[@]}" >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 600); do  # wait for `ready` (loading a real model on CPU takes a while)
  state="$("$PY" -m ase_daemon.client_cli --endpoint "$ENDPOINT" --timeout 2 ping 2>/dev/null || true)"
  case "$state" in *'"ready"'*) break ;; esac
  kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/daemon.log" >&2; exit 1; }
  sleep 0.5
done
case "$state" in *'"ready"'*) ;; *) echo "the daemon never became ready" >&2; tail "$WORK/daemon.log" >&2; exit 1 ;; esac

# Inside Xvfb: the viewer shows the real window (xcb), waits for the critique, writes Qt's grab of it, and stays
# open --hold seconds, while xwd grabs the X screen itself.
cat >"$WORK/inside.sh" <<'EOS'
set -euo pipefail
"$PY" -m ase_gui.app "$PHOTO" --endpoint "$ENDPOINT" --screenshot "$WORK/qt.png" --timeout 300 --size "$SIZE" --hold 4 &
viewer=$!
for _ in $(seq 1 3000); do [ -f "$WORK/qt.png" ] && break; kill -0 $viewer 2>/dev/null || break; sleep 0.1; done
if [ -f "$WORK/qt.png" ] && command -v xwd >/dev/null && command -v convert >/dev/null; then
  sleep 0.5  # the grab is written after the last paint; give the X server that frame too
  xwd -root -silent | convert xwd:- "png:$WORK/screen.png" || true
fi
wait $viewer
EOS
export PY PHOTO ENDPOINT WORK SIZE
set +e
QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 ${SIZE}x24" bash "$WORK/inside.sh"
rc=$?
set -e
if [ "$rc" -ne 0 ]; then
  echo "ase-viewer --screenshot exited $rc (2: daemon down, 3: no critique in time)" >&2
  exit "$rc"
fi
mkdir -p "$(dirname "$OUT")"
if [ -s "$WORK/screen.png" ]; then
  cp "$WORK/screen.png" "$OUT"
  echo "wrote $OUT (X screen, xwd)"
else
  cp "$WORK/qt.png" "$OUT"
  echo "wrote $OUT (Qt's grab of the window)"
fi
