"""Real photographs that ship offline, from several independent sources, with one whole source held out.

Every source is a package already on the machine - a Python distribution (scikit-image, scikit-learn) or a
Debian package (desktop wallpaper collections, OpenCV's documentation samples, matplotlib's sample data) - and
an explicit allow-list of its files that are real photographs (landscapes, cities, people, animals, objects,
flowers, night scenes), each looked at by a person: no illustrations, renders, abstract art, logos, test charts
or documents. The allow-list makes the photo set the same on every machine with the same package versions.
Nothing here downloads anything: a missing package or file is skipped and named in SKIPPED.

`./install.sh --test` installs the Debian packages; docs/photo-sources.md lists every photo with its licence.

    from ase_model.starter.sources import training_photos, holdout_photos
    train, held = training_photos(), holdout_photos()   # 59 and 29 photos after ./install.sh --test

    python -m ase_model.starter.sources [--sheet contact.png]   # what is there; a contact sheet to look at
"""

from __future__ import annotations

import argparse
import io
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageCms, ImageDraw

__all__ = ["Source", "SOURCES", "HOLDOUT_SOURCE", "SKIPPED", "source_files", "source_photos",
           "training_photos", "holdout_photos"]


@dataclass(frozen=True)
class Source:
    """One independent source of real photographs.

    Args:
        packages: the Debian package(s), or the Python distribution, that ship the files.
        licence: the licence of the photos, as the package's copyright file states it.
        roots: folders searched, in order, for each relative path in `files` (the first hit wins).
        files: allow-list: photo name -> path relative to a root. Only these files are ever used.
    """

    packages: tuple[str, ...]
    licence: str
    roots: tuple[str, ...]
    files: dict[str, str]

    @property
    def debian(self) -> bool:
        """True when the files come from Debian packages (installed by ./install.sh --test)."""
        return bool(self.roots) and all(r.startswith("/usr/share/") for r in self.roots)

    def path(self, name: str) -> Path | None:
        """The file of photo `name` on this machine, or None when it is absent."""
        for root in self.roots:
            p = Path(root) / self.files[name]
            if p.is_file():
                return p
        return None


def _skimage_roots() -> tuple[str, ...]:
    """scikit-image's data folders: the one in its distribution and its download cache (read, never filled)."""
    try:
        from skimage.data import _fetchers
    except Exception:  # pragma: no cover - scikit-image missing or its layout changed
        return ()
    roots = [getattr(_fetchers, "_DISTRIBUTION_DIR", None)]
    fetcher = getattr(_fetchers, "_image_fetcher", None)
    roots.append(str(fetcher.abspath) if fetcher is not None else os.path.dirname(getattr(_fetchers, "data_dir", "")))
    return tuple(r for r in roots if r)


def _sklearn_roots() -> tuple[str, ...]:
    try:
        import sklearn.datasets
    except Exception:  # pragma: no cover - scikit-learn missing
        return ()
    return (os.path.join(os.path.dirname(sklearn.datasets.__file__), "images"),)


def _plasma(*names: str) -> dict[str, str]:
    # Each Plasma wallpaper is a folder of sizes, most of them symlinks to the one real 2560x1600 file.
    return {n: f"{n}/contents/images/2560x1600.jpg" for n in names}


_OCV = "/usr/share/doc/opencv-doc/examples"

# Ordered: the Python sources first (always there), then the Debian ones, the held-out source last.
SOURCES: dict[str, Source] = {
    # Left out: clock (a motion-blur target), hubble_deep_field, retina, ihc, cell (science), grass, gravel,
    # brick (texture swatches), page, text (documents) and the synthetic images. eagle is used only where a
    # previous download left it in scikit-image's cache.
    "skimage": Source(
        packages=("scikit-image",),
        licence="public domain / CC0 per image (astronaut, camera, chelsea, coffee, coins, eagle, rocket: "
                "scikit-image docstrings); moon and motorcycle (Middlebury stereo): scikit-image test data, "
                "no restriction stated",
        roots=_skimage_roots(),
        files={"astronaut": "data/astronaut.png", "camera": "data/camera.png", "chelsea": "data/chelsea.png",
               "coffee": "data/coffee.png", "coins": "data/coins.png", "eagle": "data/eagle.png",
               "moon": "data/moon.png", "motorcycle": "data/motorcycle_left.png", "rocket": "data/rocket.jpg"},
    ),
    "sklearn": Source(
        packages=("scikit-learn",),
        licence="CC-BY-2.0 (sklearn/datasets/images/README.txt)",
        roots=_sklearn_roots(),
        files={"china": "china.jpg", "flower": "flower.jpg"},
    ),
    # Left out: desktop/* (renders, logos), abstract/* (Elephants is a painting, the rest gradients).
    "mate-backgrounds": Source(
        packages=("mate-backgrounds",),
        licence="GPL-2+ (/usr/share/doc/mate-backgrounds/copyright)",
        roots=("/usr/share/backgrounds/mate/nature",),
        files={n: f"{n}.jpg" for n in ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow",
                                       "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")},
    ),
    # Left out: analogpattern, umang (abstract), Fossa, Painting-Colors (illustrations), Infinite-Sea (a render).
    "lomiri-wallpapers": Source(
        packages=("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04"),
        licence="CC-BY-4.0, CC-BY-SA-4.0, CC0-1.0 or CC-BY-SA-3.0 per file "
                "(/usr/share/doc/lomiri-wallpapers-16.04/copyright)",
        roots=("/usr/share/backgrounds",),
        files={n.split("_by_")[0]: f"{n}.jpg" for n in (
            "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Picture_0B_by_freespace",
            "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
            "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "greentock_by_Peter_Nerlich",
            "life_by_Aitzol_Berasategi", "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt",
            "sunset_by_Aitzol_Berasategi", "Kleiber_by_Lukas_Baubkus")},
    ),
    # Left out: the logos, origami, triangles, waves, plasma and blue gradients.
    "lxqt-themes": Source(
        packages=("lxqt-themes",),
        licence="LGPL-2.1+ (/usr/share/doc/lxqt-themes/copyright, Files: *); upstream "
                "wallpapers/License: CC-BY-SA-3.0",
        roots=("/usr/share/lxqt/wallpapers",),
        files={"Butterfly-Kenneth-Wimer": "Butterfly-Kenneth-Wimer.jpg", "Valendas": "Valendas.png",
               "after-the-rain": "after-the-rain.jpg", "appleflower": "appleflower.png", "beam": "beam.png",
               "butterfly": "butterfly.png", "cloud": "cloud.png", "drop": "drop.png", "flowers": "flowers.png",
               "fog": "fog.jpg", "this-is-not-windows": "this-is-not-windows.jpg"},
    ),
    # Left out: the renders and illustrations (Altai, Autumn, Canopee, Cascade, Cluster, Elarun, Flow,
    # FlyingKonqui, Honeywave, IceCold, Kay, Kokkini, MilkyWay, Opal, PastelHills, Patak, SafeLanding, Shell,
    # Volna).
    "plasma-workspace-wallpapers": Source(
        packages=("plasma-workspace-wallpapers",),
        licence="GPL-2+ (/usr/share/doc/plasma-workspace-wallpapers/copyright)",
        roots=("/usr/share/wallpapers",),
        files=_plasma("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
                      "Grey", "Kite", "OneStandsOut", "Path", "summer_1am"),
    ),
    "matplotlib": Source(
        packages=("python-matplotlib-data",),
        licence="matplotlib licence (/usr/share/doc/python-matplotlib-data/copyright); the photo is a US Navy "
                "portrait, public domain",
        roots=("/usr/share/matplotlib/mpl-data/sample_data",),
        files={"grace_hopper": "grace_hopper.jpg"},
    ),
    # The held-out source. Left out: logos, renders (Blender_Suzanne, smarties), charts and calibration shots
    # (chessboards, left01..14), documents (sudoku, text, imageText*), shapes and masks, a painting
    # (starry_night), the graffiti wall (graf*), deliberately blurred shots (licenseplate_motion, text_*),
    # grey-scale shots (basketball, box*), tampered or stereo twins (ela_modified, aloeR, right, leuvenB, aero1).
    "opencv-doc": Source(
        packages=("opencv-doc",),
        licence="Apache-2.0 AND BSD-3-Clause (/usr/share/doc/opencv-doc/copyright, Files: *)",
        roots=(_OCV,),
        files={
            **{n: f"data/{n}.jpg" for n in (
                "aero3", "aloeL", "apple", "baboon", "board", "building", "butterfly", "ela_original", "fruits",
                "home", "left", "leuvenA", "messi5", "orange", "squirrel_cls", "stuff")},
            "chicky_512": "data/chicky_512.png", "rubberwhale1": "data/rubberwhale1.png",
            "plant": "alphamat/input_images/plant.jpg",
            "robin": "hfs/data/000.jpg", "lake": "hfs/data/001.jpg", "tree": "hfs/data/002.jpg",
            "house": "reg/home.png", "monarch": "dnn_superres/butterfly.png",
            **{f"scenetext{i}": f"text/scenetext{i}.jpg" for i in ("01", "03", "04", "05", "06")},
        },
    ),
}

# Held out: the one source with enough varied colour photos to report on (people, streets, buildings with
# verticals, a lake and a field with horizons, animals, fruit, objects), and a different look from the
# wallpapers (camera snapshots, not curated desktop art), so a model that only learnt the wallpapers' look shows.
HOLDOUT_SOURCE = "opencv-doc"

SKIPPED: list[str] = []  # "source:name" of allow-listed photos absent on this machine (filled by source_photos)

_CACHE: dict[tuple[str, int], Image.Image] = {}


def source_files(sources: Iterable[str] | None = None) -> dict[str, Path | None]:
    """The allow-listed files, keyed "source:name" (sorted); None where the file is absent on this machine.

    Args:
        sources: source names (keys of SOURCES); all of them when None.
    """
    names = list(SOURCES) if sources is None else list(sources)
    unknown = [s for s in names if s not in SOURCES]
    if unknown:
        raise KeyError(f"unknown photo source(s) {unknown}; known: {list(SOURCES)}")
    return {f"{s}:{n}": SOURCES[s].path(n) for s in names for n in sorted(SOURCES[s].files)}


def _to_srgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    """RGB pixels in sRGB: a photo tagged with another colour space (e.g. skimage's rocket, Adobe RGB) is
    converted, so that its colours - which the critic judges - look as a colour-managed viewer shows them."""
    if not icc or im.mode != "RGB":
        return im
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(profile).lower():
            return im
        return ImageCms.profileToProfile(im, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (OSError, ImageCms.PyCMSError):  # a broken profile: keep the pixels as they are, as most viewers do
        return im


def _load(path: Path, max_side: int) -> Image.Image:
    with Image.open(path) as im:
        icc = im.info.get("icc_profile")
        im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale (still >= max_side) - fast
        im = _to_srgb(im.convert("RGB"), icc)
    scale = max_side / max(im.size)
    if scale < 1:  # downscale only, never up
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    return im


def source_photos(sources: Iterable[str] | None = None, max_side: int = 1024) -> dict[str, Image.Image]:
    """The photos of the given sources as RGB PIL images keyed "source:name" (sorted), long side <= max_side.

    Pixels are sRGB (a photo tagged with another ICC profile is converted). Cached per process (each call
    returns fresh copies). Allow-listed files absent on this machine are skipped and listed in SKIPPED;
    nothing is ever downloaded.

    Args:
        sources: source names (keys of SOURCES); all of them when None.
        max_side: the longest side after downscaling (photos are never upscaled).
    """
    if max_side < 1:
        raise ValueError(f"max_side must be >= 1, got {max_side}")
    out = {}
    for key, path in sorted(source_files(sources).items()):
        if path is None:
            if key not in SKIPPED:
                SKIPPED.append(key)
                SKIPPED.sort()
            continue
        if (key, max_side) not in _CACHE:
            _CACHE[(key, max_side)] = _load(path, max_side)
        out[key] = _CACHE[(key, max_side)].copy()
    return out


def training_photos(max_side: int = 1024) -> dict[str, Image.Image]:
    """Every source's photos but the held-out source's (see source_photos).

    Args:
        max_side: the longest side after downscaling.
    """
    return source_photos([s for s in SOURCES if s != HOLDOUT_SOURCE], max_side)


def holdout_photos(max_side: int = 1024) -> dict[str, Image.Image]:
    """The held-out source's photos, never to be used in training (see source_photos).

    Args:
        max_side: the longest side after downscaling.
    """
    return source_photos([HOLDOUT_SOURCE], max_side)


def _contact_sheet(photos: dict[str, Image.Image], cell: int = 200, cols: int = 8) -> Image.Image:
    rows = max(1, math.ceil(len(photos) / cols))
    sheet = Image.new("RGB", (cols * cell, rows * (cell + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (key, im) in enumerate(photos.items()):
        im = im.copy()
        im.thumbnail((cell, cell))
        x, y = (i % cols) * cell, (i // cols) * (cell + 14)
        sheet.paste(im, (x, y))
        draw.text((x + 2, y + cell), key[:34], fill="black")
    return sheet


def main(argv: list[str] | None = None) -> int:
    """Print each source (packages, photos present of those allow-listed, licence) and the skipped photos;
    with --sheet, also save a contact sheet of every photo, the held-out ones last.

    Args:
        argv: command-line arguments (sys.argv[1:] when None).
    """
    parser = argparse.ArgumentParser(prog="python -m ase_model.starter.sources", description=main.__doc__)
    parser.add_argument("--sheet", type=Path, help="write a contact sheet of every photo to this PNG")
    args = parser.parse_args(argv)
    photos = source_photos(max_side=256 if args.sheet else 1024)
    for name, src in SOURCES.items():
        n = sum(k.startswith(name + ":") for k in photos)
        role = "held out" if name == HOLDOUT_SOURCE else "training"
        print(f"{name:30s} {role:8s} {n:3d}/{len(src.files):<3d} {', '.join(src.packages)}  [{src.licence}]")
    held = sum(k.startswith(HOLDOUT_SOURCE + ":") for k in photos)
    print(f"training {len(photos) - held}, held out {held}; skipped: {', '.join(SKIPPED) or 'none'}")
    if args.sheet:
        order = [s for s in SOURCES if s != HOLDOUT_SOURCE] + [HOLDOUT_SOURCE]
        ordered = {k: photos[k] for s in order for k in photos if k.split(":")[0] == s}
        _contact_sheet(ordered).save(args.sheet)
        print(f"contact sheet: {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
