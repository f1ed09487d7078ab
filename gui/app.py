"""ase-viewer: photos with their aesthetic saliency overlay and the critic's critique.

    ase-viewer [PATH…] [--endpoint URL]                 files and/or folders; none: the last folder
    ase-viewer [PATH…] --profile NAME                   critiques with a personal score too (remembered)
    ase-viewer PHOTO --screenshot OUT.png [--timeout S]  render the window with PHOTO's critique to OUT.png

--screenshot exit codes: 0 the critique is in the picture; 2 the daemon is down (that state is in the picture);
3 timed out waiting (what there was is in the picture); 1 nothing could be written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

__all__ = ["EXIT_DOWN", "EXIT_ERROR", "EXIT_OK", "EXIT_TIMEOUT", "apply_dark_theme", "main", "make_link",
           "parse_args", "run_screenshot"]

EXIT_OK, EXIT_ERROR, EXIT_DOWN, EXIT_TIMEOUT = 0, 1, 2, 3


def parse_args(argv=None) -> argparse.Namespace:
    """ase-viewer's command line.

    Args:
        argv: the arguments (None: sys.argv[1:]).
    """
    p = argparse.ArgumentParser(prog="ase-viewer", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="*", help="photos and/or folders to show")
    p.add_argument("--endpoint", help="the daemon's endpoint (default: $ASE_ENDPOINT, the config file, the ipc socket)")
    p.add_argument("--server-key", help="CURVE: the daemon's public key file (server.key) or z85 key")
    p.add_argument("--client-key", help="CURVE: this client's secret key file (client.key_secret)")
    p.add_argument("--screenshot", metavar="OUT.png", help="render the window once the critique is in, and exit")
    p.add_argument("--timeout", type=float, default=60.0, help="--screenshot: longest wait, seconds (default 60)")
    p.add_argument("--hold", type=float, default=0.0,
                   help="--screenshot: stay open this many seconds after writing (to grab the real screen, e.g. xwd)")
    p.add_argument("--size", default="1400x900", help="--screenshot: window size WxH (default 1400x900)")
    p.add_argument("--mode", choices=["heat", "contour"], help="overlay mode to start with")
    p.add_argument("--profile", help="a personal profile (ase-mllm learn): a second score, your taste; remembered "
                                     "(--profile '' goes back to none)")
    p.add_argument("--pick-rating", type=int, choices=range(0, 6), metavar="N",
                   help="culling view: P raises a pick rated lower to N stars (1..5; 0: leave its stars); remembered")
    return p.parse_args(argv)


def apply_dark_theme(app) -> None:
    """Photos are judged best on a neutral dark surround (bright chrome shifts how a photo's tones read).

    Args:
        app: the QApplication (gets the Fusion style and a dark palette).
    """
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    pal = QPalette()
    base, window, text = QColor(30, 30, 33), QColor(38, 38, 42), QColor(225, 227, 230)
    for role, colour in {
        QPalette.ColorRole.Window: window, QPalette.ColorRole.WindowText: text, QPalette.ColorRole.Base: base,
        QPalette.ColorRole.AlternateBase: window, QPalette.ColorRole.Text: text, QPalette.ColorRole.Button: window,
        QPalette.ColorRole.ButtonText: text, QPalette.ColorRole.ToolTipBase: base, QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.Highlight: QColor(56, 110, 190), QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.Mid: QColor(140, 144, 150), QPalette.ColorRole.PlaceholderText: QColor(140, 144, 150),
        QPalette.ColorRole.Link: QColor(110, 160, 230),
    }.items():
        pal.setColor(role, colour)
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(110, 110, 115))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor(110, 110, 115))
    app.setPalette(pal)


def run_screenshot(window, app, out: str, timeout: float, hold: float = 0.0) -> int:
    """Wait (with the event loop running) until the critique is shown, or the daemon is known to be down and the
    photo is on screen, or the timeout; then grab the window into `out`.

    Args:
        window: the viewer's MainWindow, shown, with the photo opened.
        app: the QApplication (its event loop runs here).
        out: the PNG to write (whole or not at all: written aside, then renamed).
        timeout: the longest wait, seconds.
        hold: seconds to stay open after writing (for a tool grabbing the real screen).

    Returns:
        EXIT_OK, EXIT_DOWN, EXIT_TIMEOUT, or EXIT_ERROR if the picture could not be written.
    """
    from PySide6.QtCore import QTimer

    from .daemon_link import DOWN

    deadline = time.monotonic() + max(1.0, timeout - 1.0)  # keep a second for grabbing and writing
    outcome = {"code": None}
    settle = {"until": None}

    def check():
        photo_ready = window.image is not None or "Cannot show" in window.view.message
        if window.result is not None and photo_ready:
            code = EXIT_OK
        elif window.link.state == DOWN and photo_ready:
            code = EXIT_DOWN
        elif time.monotonic() > deadline:
            code = EXIT_TIMEOUT
        else:
            return
        if settle["until"] is None:  # let layouts and the last paint settle before grabbing
            settle["until"] = time.monotonic() + 0.3
            outcome["code"] = code
            return
        if time.monotonic() < settle["until"] and code != EXIT_TIMEOUT:
            return
        timer.stop()
        app.processEvents()
        tmp = f"{out}.part.png"
        ok = window.grab().save(tmp, "PNG")
        if ok:
            os.replace(tmp, out)  # whole or absent: a script polling for the file never reads half of it
        outcome["code"] = outcome["code"] if ok else EXIT_ERROR
        QTimer.singleShot(int(max(0.0, hold) * 1000), lambda: app.exit(outcome["code"]))

    timer = QTimer()
    timer.timeout.connect(check)
    timer.start(50)
    code = app.exec()
    return code


def make_link(args):
    """The viewer's link to the daemon, from the command line's endpoint and CURVE keys.

    Args:
        args: parsed arguments (see parse_args).
    """
    from .daemon_link import DaemonLink

    return DaemonLink(args.endpoint, server_key=args.server_key, client_keys=args.client_key)


def main(argv=None) -> int:
    """Run ase-viewer; returns its exit code.

    Args:
        argv: the arguments (None: sys.argv[1:]).
    """
    args = parse_args(argv)
    from PySide6.QtCore import QSettings, QSize, QTimer
    from PySide6.QtWidgets import QApplication

    from .window import MainWindow

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("ase-viewer")
    app.setOrganizationName("ase-mllm")
    apply_dark_theme(app)

    if args.screenshot:
        if len(args.paths) != 1 or not os.path.isfile(args.paths[0]):
            print("ase-viewer: --screenshot needs exactly one photo file", file=sys.stderr)
            return EXIT_ERROR
        window = MainWindow(settings=None, link=make_link(args), profile=args.profile)  # remembers nothing
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            print(f"ase-viewer: --size {args.size!r}: use WxH", file=sys.stderr)
            return EXIT_ERROR
        window.resize(QSize(w, h))
        if args.mode:
            window.set_mode(args.mode)
        window.show()
        window.open_paths(args.paths)
        code = run_screenshot(window, app, args.screenshot, args.timeout, args.hold)
        window.close()
        if code == EXIT_OK:
            print(f"ase-viewer: wrote {args.screenshot}")
        elif code == EXIT_DOWN:
            print(f"ase-viewer: the daemon is down at {window.link.endpoint}; wrote {args.screenshot} anyway",
                  file=sys.stderr)
        elif code == EXIT_TIMEOUT:
            print(f"ase-viewer: no critique within {args.timeout:.0f} s; wrote {args.screenshot} as it was",
                  file=sys.stderr)
        return code

    settings = QSettings("ase-mllm", "viewer")
    if args.profile is not None:  # remembered: the next start uses it without the option
        settings.setValue("personal/profile", args.profile)
    if args.pick_rating is not None:
        settings.setValue("cull/pick_rating", args.pick_rating)
    window = MainWindow(settings=settings, link=make_link(args))
    if args.mode:
        window.set_mode(args.mode)
    window.show()
    # open after the first paint: the window is up at once, whatever the folder holds
    QTimer.singleShot(0, (lambda: window.open_paths(args.paths)) if args.paths else window.restore_last)
    # Ctrl+C / SIGTERM quit cleanly (settings saved). Python runs signal handlers only between bytecodes, so a
    # timer wakes the interpreter now and then while Qt's loop runs in C++.
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: app.quit())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)
    code = app.exec()
    window.close()  # saves geometry, folder and overlay settings (a no-op if the user closed it already)
    return code


if __name__ == "__main__":
    sys.exit(main())
