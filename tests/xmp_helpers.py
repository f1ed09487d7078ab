"""What the XMP sidecar tests share: exiftool as the independent reader, a darktable sidecar, a critique
result, and pyexiv2 access that stands in for the user or darktable editing a sidecar."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ase_daemon import xmp
from ase_daemon.xmp import NAMESPACE_URI, sidecar_path

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed "
                                    "(apt-get install libimage-exiftool-perl); it is the independent reader")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

NS = {"rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "dc": "http://purl.org/dc/elements/1.1/",
      "lr": "http://ns.adobe.com/lightroom/1.0/", "asecritic": NAMESPACE_URI}

# A sidecar as darktable 4.x writes it, plus a foreign namespace (with a struct) another tool added.
DARKTABLE_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
    xmlns:foo="http://example.com/ns/foo/1.0/"
   exif:DateTimeOriginal="2023:01:15 10:20:30.000"
   exif:GPSLatitude="48,51.400000N"
   exif:GPSLongitude="2,21.050000E"
   xmp:Rating="RATING"
   xmpMM:DerivedFrom="IMG_0001.JPG"
   darktable:import_timestamp="63810884430000000"
   darktable:change_timestamp="-1"
   darktable:xmp_version="5"
   darktable:raw_params="0"
   darktable:auto_presets_applied="1"
   darktable:history_end="2"
   darktable:iop_order_version="4"
   foo:Note="keep me — ünïcode">
   <darktable:masks_history>
    <rdf:Seq/>
   </darktable:masks_history>
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="0000000000000000000080bf"
      darktable:multi_name=""
      darktable:multi_priority="0"/>
     <rdf:li
      darktable:num="1"
      darktable:operation="colorbalancergb"
      darktable:enabled="1"
      darktable:modversion="5"
      darktable:params="gz02eJxjYIAAAAAUAAE="
      darktable:multi_name=""
      darktable:multi_priority="0"/>
    </rdf:Seq>
   </darktable:history>
   <foo:Info>
    <rdf:Description foo:Camera="X100V" foo:Frames="36"/>
   </foo:Info>
   <dc:description>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">my own words</rdf:li>
    </rdf:Alt>
   </dc:description>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>family</rdf:li>
     <rdf:li>Ürlaub</rdf:li>
     <rdf:li>beach</rdf:li>
     <rdf:li>aesthetics</rdf:li>
     <rdf:li>mine</rdf:li>
     <rdf:li>exposure</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>family</rdf:li>
     <rdf:li>Ürlaub|beach</rdf:li>
     <rdf:li>aesthetics|mine</rdf:li>
     <rdf:li>exposure</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

RESULT = {
    "text": "Composition: strong diagonal.\nExposure: a little dark — lift the shadows. 日本語 ✓ 📷",
    "attributes": {"composition": "strong diagonal", "exposure": "a little dark", "color_lighting": "warm évening"},
    "score": 6.4,
    "tags": ["aesthetics|exposure|underexposed", "aesthetics|composition|diagonal"],
    "model": "ase-mllm-7b@sha256:0123abcd",
    "saliency": {"centroid": [0.512, 0.43], "peak": [0.6, 0.25], "spread": 0.1875},
    "created": "2024-05-01T12:34:56+00:00",
}

# Keys outside our namespace and the four standard ones we may touch: must survive exactly.
FOREIGN = ["XMP-exif:DateTimeOriginal", "XMP-exif:GPSLatitude", "XMP-exif:GPSLongitude", "XMP-xmpMM:DerivedFrom",
           "XMP-darktable:Import_timestamp", "XMP-darktable:Xmp_version", "XMP-darktable:History_end",
           "XMP-darktable:History", "XMP-darktable:Iop_order_version", "XMP-foo:Note", "XMP-foo:Info"]


def exiftool(path: Path) -> dict:
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-struct", "-n", str(path)], capture_output=True, check=True,
                         timeout=60)
    return json.loads(out.stdout)[0]


def as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def array_type(path: Path, prop: str) -> str | None:
    """rdf:Bag / rdf:Seq of an array property in the raw packet (ElementTree, not exiv2)."""
    el = ET.parse(path).getroot().find(f".//{prop}", NS)
    if el is None:
        return None
    return next(iter(el)).tag.split("}")[1]


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def dt_photo(folder: Path, rating: str = "0") -> tuple[Path, Path]:
    img = folder / "IMG_0001.JPG"
    img.write_bytes(b"\xff\xd8\xff\xd9")
    side = sidecar_path(img)
    side.write_text(DARKTABLE_SIDECAR.replace("RATING", rating), encoding="utf-8")
    return img, side


def read_raw(side: Path) -> dict:
    import pyexiv2
    with xmp.PYEXIV2_LOCK:
        img = pyexiv2.ImageData(side.read_bytes())
        try:
            return img.read_xmp()
        finally:
            img.close()


def modify_sidecar(side: Path, changes: dict) -> None:
    """Stand-in for the user / darktable editing the sidecar."""
    import pyexiv2
    with xmp.PYEXIV2_LOCK:
        img = pyexiv2.ImageData(side.read_bytes())
        try:
            img.clear_exif()
            img.clear_iptc()
            img.modify_xmp(changes)
            side.write_bytes(img.get_bytes())
        finally:
            img.close()
