#!/usr/bin/env bash
# Render docs/img/darktable-panel.png: real darktable under Xvfb, the ASE critic panel showing a critique that a
# real ase-daemon made of a sample photo through the plugin (export -> ase-client -> daemon -> panel).
#
#   scripts/darktable_screenshot.sh [--model DIR] [--out PNG] [--full] [--keep]
#
#   --model DIR  the model the daemon runs. Default: the starter model when the package has one, else a tiny
#                test model trained on the spot to say one fixed critique (tests/darktable/scripted_model.py);
#                its text is canned, the rest (score, tags, attributes, panel) is the real pipeline's.
#   --out PNG    where to write the picture (default docs/img/darktable-panel.png)
#   --full       keep the whole screen instead of cropping to the lighttable and the panel
#   --keep       keep the work folder (logs, the raw xwd grab)
#
# Needs darktable, xvfb-run, xwd (x11-apps) and ImageMagick's convert (./install.sh --test installs them).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY="$ROOT/.venv/bin/python"
CLIENT="$ROOT/.venv/bin/ase-client"
OUT="$ROOT/docs/img/darktable-panel.png"
MODEL=""
FULL=0
KEEP=0
TEXT='Composition: The subject sits on a third line and the frame feels balanced.
Colour and lighting: Colours are muted and a cool cast tints the scene.
Exposure: The photo is underexposed, with deep shadows hiding detail.
Focus: The image is sharp and detail is crisp throughout.
Overall: A pleasing photograph with good light and a clear subject.'

while [ $# -gt 0 ]; do
    case "$1" in
        --model) MODEL=$(cd "$2" && pwd); shift 2 ;;
        --out) OUT=$(realpath -m "$2"); shift 2 ;;
        --full) FULL=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "darktable_screenshot: unknown argument $1" >&2; exit 2 ;;
    esac
done

for tool in darktable xvfb-run xwd convert; do
    command -v "$tool" >/dev/null || { echo "darktable_screenshot: $tool is not installed" >&2; exit 2; }
done
[ -x "$PY" ] || { echo "darktable_screenshot: no $PY (run ./install.sh)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ase-dt-shot.XXXXXX")
DAEMON_PID=""
DT_PID=""
cleanup() {
    [ -n "$DT_PID" ] && kill -KILL -- "-$DT_PID" 2>/dev/null || true
    if [ -n "$DAEMON_PID" ]; then kill "$DAEMON_PID" 2>/dev/null || true; wait "$DAEMON_PID" 2>/dev/null || true; fi
    if [ "$KEEP" = 1 ]; then echo "work folder: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
export XDG_CONFIG_HOME="$WORK/xdg/config" XDG_DATA_HOME="$WORK/xdg/data" XDG_RUNTIME_DIR="$WORK/xdg/run"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

# 1. the model
if [ -z "$MODEL" ] && [ -f "$ROOT/ase_model/starter_model/config.json" ]; then
    MODEL="$ROOT/ase_model/starter_model"
fi
if [ -z "$MODEL" ]; then
    echo "building a tiny model that says the demo critique (about a minute)..."
    MODEL="$WORK/model"
    "$PY" "$ROOT/tests/darktable/scripted_model.py" "$MODEL" --text "${TEXT//$'\n'/\\n}" --score 7.4 >/dev/null
fi

# 2. sample photos (scikit-image / scikit-learn, no download)
"$PY" - "$WORK/photos" <<'EOF'
import sys
from pathlib import Path

import skimage.data as data
from PIL import Image
from sklearn.datasets import load_sample_images

out = Path(sys.argv[1])
out.mkdir(parents=True)
photos = {name: getattr(data, name)() for name in ("astronaut", "coffee", "chelsea", "rocket")}
photos.update(zip(("china", "flower"), load_sample_images().images))
for name, arr in photos.items():
    Image.fromarray(arr).convert("RGB").save(out / f"{name}.jpg", quality=92)
EOF

# 3. the daemon
ENDPOINT="ipc://$WORK/daemon.sock"
"$PY" -m ase_daemon.cli --model "$MODEL" --endpoint "$ENDPOINT" --db "$WORK/store.db" --threads 2 \
    --max-new-tokens 256 >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
echo "waiting for ase-daemon..."
for _ in $(seq 1 300); do
    "$CLIENT" --endpoint "$ENDPOINT" --timeout 2 load >/dev/null 2>&1 && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { tail -20 "$WORK/daemon.log" >&2; exit 1; }
    sleep 1
done

# 4. darktable with the plugin, under Xvfb; the driver grabs the screen once the critique is shown
"$PY" "$ROOT/plugin_darktable/install_plugin.py" --configdir "$WORK/cfg" --client "$CLIENT" >/dev/null
export ASE_DT_RESULT="$WORK/result.txt" ASE_DT_HARNESS="$ROOT/tests/darktable/drivers/harness.lua"
export ASE_DT_DRIVER="$ROOT/tests/darktable/drivers/screenshot.lua" ASE_DT_FOLDER="$WORK/photos"
export ASE_DT_PICK="chelsea.jpg" ASE_DT_SHOT="$WORK/shot.xwd"
run_darktable() {
    rm -f "$WORK/result.txt" "$WORK/result.txt.started" "$WORK"/cfg/data.db*
    setsid timeout -k 5 180 xvfb-run -a -s "-screen 0 1500x900x24" darktable --configdir "$WORK/cfg" \
        --cachedir "$WORK/cache" --library :memory: --disable-opencl -d lua \
        --conf "lua/ase_critic/endpoint=$ENDPOINT" --conf lua/ase_critic/apply_tags_auto=TRUE \
        --conf lua/ase_critic/set_rating_auto=TRUE --conf ui_last/import_initial_rating=1 \
        --conf ui_last/window_x=0 --conf ui_last/window_y=0 --conf ui_last/window_w=1500 \
        --conf ui_last/window_h=900 --conf ui_last/panel_right=1 --conf plugins/lighttable/timeline/visible=FALSE \
        --luacmd "dofile(os.getenv('ASE_DT_DRIVER'))" >"$WORK/darktable.log" 2>&1 &
    DT_PID=$!
    # darktable 4.2 can hang while it starts (a Lua/GTK race of its own): try again once if the driver never ran
    for _ in $(seq 1 45); do
        [ -f "$WORK/result.txt.started" ] && break
        sleep 1
    done
    if [ ! -f "$WORK/result.txt.started" ]; then
        kill -KILL -- "-$DT_PID" 2>/dev/null || true
        wait "$DT_PID" 2>/dev/null || true
        DT_PID=""
        return 1
    fi
    wait "$DT_PID" || true
    DT_PID=""
}
echo "running darktable..."
run_darktable || { echo "darktable stuck at startup, once more..."; run_darktable; }
if ! grep -q $'^driver\tPASS' "$WORK/result.txt" 2>/dev/null || [ ! -s "$WORK/shot.xwd" ]; then
    echo "darktable_screenshot: no screenshot; driver said: $(grep '^driver' "$WORK/result.txt" 2>/dev/null)" >&2
    tail -20 "$WORK/darktable.log" >&2
    KEEP=1
    exit 1
fi

# 5. to PNG: the thumbnails and the right panel (the window is 1500x900 at 0,0), scaled for a README
mkdir -p "$(dirname "$OUT")"
if [ "$FULL" = 1 ]; then
    convert "xwd:$WORK/shot.xwd" "$OUT"
else
    convert "xwd:$WORK/shot.xwd" -crop 1230x770+270+0 +repage -resize '80%' -strip "$OUT"
fi
echo "wrote $OUT"
