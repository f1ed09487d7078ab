"""The real-photo sources: installed by ./install.sh --test, allow-listed files present, the held-out source
disjoint from training (by file and by pixels), every photo RGB and never larger than asked, nothing downloaded."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ase_model.starter import sources
from ase_model.starter.sources import HOLDOUT_SOURCE, SOURCES, Source

ROOT = Path(__file__).resolve().parents[1]
# Allow-listed but not shipped: scikit-image downloads eagle on demand, so it is used only where a cache has it.
OPTIONAL = {"skimage:eagle"}
MAX_SIDE = 320  # small, to keep the module quick; the default size is checked on a subset below


@pytest.fixture(scope="module")
def all_photos() -> dict[str, Image.Image]:
    return sources.source_photos(max_side=MAX_SIDE)


def _thumb(image: Image.Image) -> np.ndarray:
    """32x32 grey thumbnail, normalised (zero mean, unit std) so a re-encoded or rescaled copy still matches."""
    g = np.asarray(image.convert("L").resize((32, 32), Image.BICUBIC), dtype=np.float64)
    return (g - g.mean()) / (g.std() + 1e-6)


def _pixel_hash(image: Image.Image) -> str:
    return hashlib.sha1(np.asarray(image.resize((32, 32), Image.BICUBIC)).tobytes()).hexdigest()


def test_every_debian_photo_package_is_installed_by_install_sh():
    script = (ROOT / "install.sh").read_text()
    match = re.search(r"PHOTOS=\(([^)]*)\)", script)
    assert match, "install.sh has no PHOTOS=(...) list of photo packages"
    listed = set(match.group(1).split())
    needed = {p for s in SOURCES.values() if s.debian for p in s.packages}
    assert needed <= listed, f"install.sh --test does not install {sorted(needed - listed)}"


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="not a Debian system")
@pytest.mark.parametrize("name", [n for n, s in SOURCES.items() if s.debian])
def test_debian_source_is_installed(name):
    for package in SOURCES[name].packages:
        rc = subprocess.run(["dpkg", "-s", package], capture_output=True).returncode
        assert rc == 0, f"{package} is not installed: run ./install.sh --test"


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_allow_listed_file_exists(name):
    files = sources.source_files([name])
    missing = [k for k, p in files.items() if p is None and k not in OPTIONAL]
    assert not missing, f"allow-listed photos missing (./install.sh --test installs them): {missing}"
    assert all(p is None or p.is_file() for p in files.values())


def test_counts_and_independent_sources(all_photos):
    train = [k for k in all_photos if not k.startswith(HOLDOUT_SOURCE + ":")]
    held = [k for k in all_photos if k.startswith(HOLDOUT_SOURCE + ":")]
    per_source = {}
    for k in train:
        per_source[k.split(":")[0]] = per_source.get(k.split(":")[0], 0) + 1
    assert len(train) >= 55, per_source
    assert sum(n >= 10 for n in per_source.values()) >= 3, per_source  # at least three substantial sources
    assert len(held) >= 20
    assert sorted(all_photos) == list(all_photos)  # sorted keys, "source:name"
    assert set(sources.SKIPPED) <= OPTIONAL


def test_training_and_holdout_split_by_source():
    train, held = sources.training_photos(MAX_SIDE), sources.holdout_photos(MAX_SIDE)
    assert held and train
    assert {k.split(":")[0] for k in held} == {HOLDOUT_SOURCE}
    assert HOLDOUT_SOURCE not in {k.split(":")[0] for k in train}
    assert set(train) | set(held) == set(sources.source_photos(max_side=MAX_SIDE))


def test_holdout_shares_no_file_and_no_image_with_training(all_photos):
    files = sources.source_files()
    held_files = {p.resolve() for k, p in files.items() if p and k.startswith(HOLDOUT_SOURCE + ":")}
    train_files = {p.resolve() for k, p in files.items() if p and not k.startswith(HOLDOUT_SOURCE + ":")}
    assert not held_files & train_files

    held = {k: v for k, v in all_photos.items() if k.startswith(HOLDOUT_SOURCE + ":")}
    train = {k: v for k, v in all_photos.items() if k not in held}
    assert not {_pixel_hash(v) for v in held.values()} & {_pixel_hash(v) for v in train.values()}
    # Near-duplicates too (the same photo re-encoded, rescaled or brightened): distinct photos here differ by
    # >= 0.38 in mean |difference| of normalised 32x32 thumbnails; a copy differs by a few hundredths.
    h = np.stack([_thumb(v) for v in held.values()])
    t = np.stack([_thumb(v) for v in train.values()])
    dist = np.abs(h[:, None] - t[None]).mean(axis=(2, 3))
    i, j = np.unravel_index(dist.argmin(), dist.shape)
    assert dist[i, j] > 0.15, f"{list(held)[i]} looks like {list(train)[j]}"


def test_near_duplicate_check_catches_a_copy(all_photos):
    # The thumbnail distance above must see a re-encoded, rescaled, brightened copy as the same photo.
    original = all_photos["opencv-doc:fruits"]
    copy = original.resize((original.width // 2, original.height // 2)).point(lambda v: min(255, v + 12))
    assert np.abs(_thumb(original) - _thumb(copy)).mean() < 0.15


def test_every_photo_is_rgb_and_bounded(all_photos):
    for key, image in all_photos.items():
        assert image.mode == "RGB", key
        assert max(image.size) <= MAX_SIDE, (key, image.size)
        assert min(image.size) >= 64, (key, image.size)


def test_default_size_downscales_only():
    files = sources.source_files([HOLDOUT_SOURCE])
    photos = sources.holdout_photos()  # default max_side=1024
    seen_small = seen_large = False
    for key, image in photos.items():
        with Image.open(files[key]) as src:
            w, h = src.size
        assert max(image.size) <= 1024
        if max(w, h) <= 1024:  # never upscaled
            assert image.size == (w, h), key
            seen_small = True
        else:  # long side exactly 1024, aspect kept
            assert max(image.size) == 1024, key
            assert abs(image.width / image.height - w / h) < 0.01, key
            seen_large = True
    assert seen_small and seen_large  # both branches exercised by real files


def test_cache_hands_out_copies():
    first = sources.source_photos(["sklearn"], max_side=MAX_SIDE)
    first["sklearn:china"].paste((255, 0, 0), (0, 0, 50, 50))
    again = sources.source_photos(["sklearn"], max_side=MAX_SIDE)
    assert again["sklearn:china"].getpixel((10, 10)) != (255, 0, 0)


def test_skimage_photos_never_download(monkeypatch):
    fetchers = pytest.importorskip("skimage.data._fetchers")

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(fetchers, "_fetch", no_download, raising=False)
    if getattr(fetchers, "_image_fetcher", None) is not None:
        monkeypatch.setattr(fetchers._image_fetcher, "fetch", no_download)
    monkeypatch.setattr(sources, "_CACHE", {})
    photos = sources.source_photos(["skimage"], max_side=64)
    assert "skimage:astronaut" in photos and "skimage:coffee" in photos


def test_photos_are_converted_to_srgb(monkeypatch, tmp_path):
    # A real Adobe RGB (1998) profile: the one scikit-image's rocket.jpg carries.
    rocket = sources.source_files(["skimage"])["skimage:rocket"]
    with Image.open(rocket) as im:
        adobe = im.info["icc_profile"]
    raw = np.full((32, 48, 3), (90, 160, 70), np.uint8)  # a muted green, inside both gamuts
    Image.fromarray(raw).save(tmp_path / "adobe.png", icc_profile=adobe)
    Image.fromarray(raw).save(tmp_path / "plain.png")
    fake = Source(packages=("fake",), licence="CC0", roots=(str(tmp_path),),
                  files={"adobe": "adobe.png", "plain": "plain.png"})
    monkeypatch.setitem(sources.SOURCES, "fake", fake)
    photos = sources.source_photos(["fake"])
    assert np.array_equal(np.asarray(photos["fake:plain"]), raw)  # untagged: taken as sRGB, unchanged
    r, g, b = np.asarray(photos["fake:adobe"])[0, 0].astype(int)
    # The same numbers mean a more saturated green in Adobe RGB: in sRGB the spread between channels grows.
    assert g - min(r, b) > 160 - 70 + 10

    # sRGB-tagged photos keep their pixels exactly.
    china = sources.source_files(["sklearn"])["sklearn:china"]
    loaded = sources.source_photos(["sklearn"])["sklearn:china"]
    with Image.open(china) as im:
        assert np.array_equal(np.asarray(loaded), np.asarray(im.convert("RGB")))


def test_missing_file_is_skipped_and_listed(monkeypatch, tmp_path):
    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "here.png")
    fake = Source(packages=("fake-photos",), licence="CC0", roots=(str(tmp_path),),
                  files={"here": "here.png", "gone": "gone.jpg"})
    monkeypatch.setitem(sources.SOURCES, "fake", fake)
    monkeypatch.setattr(sources, "SKIPPED", [])
    photos = sources.source_photos(["fake"])
    assert list(photos) == ["fake:here"]
    assert photos["fake:here"].size == (40, 30)  # not upscaled to max_side
    assert sources.SKIPPED == ["fake:gone"]


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(KeyError, match="unknown photo source"):
        sources.source_photos(["no-such-source"])
    with pytest.raises(ValueError, match="max_side"):
        sources.source_photos(max_side=0)


def test_cli_lists_sources_and_writes_a_contact_sheet(tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert sources.main(["--sheet", str(sheet)]) == 0
    out = capsys.readouterr().out
    for name in SOURCES:
        assert name in out
    n = len(sources.source_photos(max_side=256))
    assert f"held out {len(sources.holdout_photos(256))}" in out
    with Image.open(sheet) as im:  # 8 columns of 200 px cells, one row per 8 photos
        assert im.size == (8 * 200, -(-n // 8) * 214)
        assert np.asarray(im.convert("L")).std() > 20  # photos, not a blank page
