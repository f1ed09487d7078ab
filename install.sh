#!/usr/bin/env bash
# Sets up (idempotently) everything the project needs in ./.venv.
#   ./install.sh          the product: Python packages, the darktable plugin if darktable is set up
#   ./install.sh --test   also the test tools and the Debian packages the tests run
#                         (darktable, xvfb, exiftool, Qt's xcb libraries) and the photo packages
#                         (docs/photo-sources.md), when absent
set -euo pipefail
cd "$(dirname "$0")"

WITH_TEST=0
for arg in "$@"; do
    case "$arg" in
        --test) WITH_TEST=1 ;;
        -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done

say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

# torch first, pinned: an unpinned torch (asked for by any other package) pulls a multi-GB CUDA build.
TORCH_VERSION=${ASE_TORCH_VERSION:-2.13.0}
EXTRA=""
[ "$WITH_TEST" = 1 ] && EXTRA="[test]"
STAMP=".venv/.ase-installed-$(cat pyproject.toml install.sh | sha1sum | cut -c1-12)${EXTRA:+-test}"
if [ ! -e "$STAMP" ]; then
    if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
        say "installing torch==$TORCH_VERSION"
        "${PIP[@]}" install "torch==$TORCH_VERSION"
    fi
    say "installing the project and its Python packages into .venv"
    "${PIP[@]}" install -e ".$EXTRA" "torch==$TORCH_VERSION"
    touch "$STAMP"
else
    say "Python packages already installed (.venv)"
fi

if [ "$WITH_TEST" = 1 ]; then
    # Debian packages the tests run for real: darktable (plugin tests), xvfb (a real X server),
    # exiftool (independent XMP reader), Qt's xcb libraries (viewer under Xvfb), chromium (the demo report's
    # sortable table, clicked in a headless browser; docs/report.md); and the packages that ship
    # the real photographs the starter model is trained and evaluated on (ase_model/starter/sources.py,
    # docs/photo-sources.md; ~510 MiB installed with what apt adds, ~310 MiB of it for opencv-doc).
    PHOTOS=(mate-backgrounds lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 lxqt-themes
            plasma-workspace-wallpapers python-matplotlib-data opencv-doc)
    TOOLS=(darktable xvfb xauth libimage-exiftool-perl libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 x11-apps
           imagemagick chromium)
    NEED=()
    for pkg in "${TOOLS[@]}" "${PHOTOS[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || NEED+=("$pkg")
    done
    if [ "${#NEED[@]}" -gt 0 ]; then
        SUDO=""
        [ "$(id -u)" -ne 0 ] && SUDO="sudo"
        say "installing Debian packages: ${NEED[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${NEED[@]}" >/dev/null
    else
        say "Debian test packages already installed"
    fi
fi

# The darktable plugin, when the user has a darktable config folder (never in tests: they use their own).
if [ -z "${CI:-}" ] && [ -f plugin_darktable/install_plugin.py ] && [ -d "${XDG_CONFIG_HOME:-$HOME/.config}/darktable" ]; then
    .venv/bin/python plugin_darktable/install_plugin.py --client "$PWD/.venv/bin/ase-client" || say "darktable plugin not installed (see docs/darktable.md)"
fi

say "done. Commands are in .venv/bin: ase-mllm, ase-daemon, ase-client, ase-viewer"
