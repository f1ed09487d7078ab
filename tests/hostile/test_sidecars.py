"""Hostile and odd pre-existing sidecars: links, FIFOs, devices, XXE, billion laughs, invalid XML, UTF-16, huge.

Every case ends with: no byte of foreign content lost (a refused sidecar is byte-identical, an updated one keeps
every foreign value), nothing outside the photo's folder touched, no temp file left, and no hang (each write runs
under a hard time limit; the watched-folder test proves the single watcher thread keeps going past a FIFO).
"""

from __future__ import annotations

import errno
import io
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from ase_daemon import protocol as P
from ase_daemon.xmp import MAX_SIDECAR_BYTES, PYEXIV2_LOCK, SidecarError, read_sidecar, sidecar_path, write_sidecar
from PIL import Image

pytestmark = pytest.mark.timeout(300)

RESULT = {"text": "Exposure: a little dark.", "attributes": {"exposure": "a little dark"}, "score": 6.4,
          "tags": ["aesthetics|exposure|underexposed"], "model": "tiny@sha256:0", "saliency": {"spread": 0.2}}

FOREIGN = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:foo="http://example.com/ns/foo/1.0/" xmp:Rating="3" foo:Note="keep me \u2014 \u00fcn\u00efcode{pad}">
   <dc:subject><rdf:Bag><rdf:li>family</rdf:li><rdf:li>beach</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE x [ <!ENTITY secret SYSTEM "file://{secret}"> ]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:foo="http://example.com/ns/foo/1.0/" foo:Note="&secret;"/></rdf:RDF></x:xmpmeta>
"""

LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:foo="http://example.com/ns/foo/1.0/" foo:Note="&lol9;"/></rdf:RDF></x:xmpmeta>
"""


def foreign_values(data: bytes) -> dict:
    """Every value outside our namespace (what must survive), read with exiv2."""
    import pyexiv2

    with PYEXIV2_LOCK:
        img = pyexiv2.ImageData(data)
        try:
            return {k: v for k, v in img.read_xmp().items() if not k.startswith("Xmp.asecritic.")}
        finally:
            img.close()


def kept(before: bytes, after: bytes) -> bool:
    """Every foreign value of `before` is in `after` (lists may gain our tags after the user's)."""
    old, new = foreign_values(before), foreign_values(after)
    return all(new.get(k) == v or (isinstance(v, list) and new.get(k, [])[:len(v)] == v) for k, v in old.items())


def write_in_time(image: Path, seconds: float = 10.0):
    """write_sidecar under a hard limit: returns the path, or the SidecarError it raised."""
    def go():
        try:
            return write_sidecar(image, RESULT)
        except SidecarError as e:
            return e

    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(go).result(timeout=seconds)
    finally:
        pool.shutdown(wait=False)  # a hung write must fail the test, not hang it


def snapshot(folder: Path) -> dict:
    """name -> (kind, bytes or link target) of everything in a folder, links not followed."""
    out = {}
    for p in sorted(folder.iterdir()):
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            out[p.name] = ("link", os.readlink(p))
        elif stat.S_ISREG(st.st_mode):
            out[p.name] = ("file", p.read_bytes())
        else:
            out[p.name] = ("other", stat.S_IFMT(st.st_mode))
    return out


@pytest.fixture()
def place(tmp_path):
    photos, outside = tmp_path / "photos", tmp_path / "outside"
    photos.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    (outside / "other.xmp").write_text(FOREIGN.format(pad=""))
    return photos, outside


def refused(photos: Path, outside: Path, name: str, make, words: str) -> None:
    """Make the sidecar of `name` with `make(side)`, write: refused with `words`, everything left as it was."""
    img = photos / name
    side = sidecar_path(img)
    make(side)
    before, before_out = snapshot(photos), snapshot(outside)
    out = write_in_time(img)
    assert isinstance(out, SidecarError), f"{name}: written through {out}"
    assert words in str(out), str(out)
    assert snapshot(photos) == before and snapshot(outside) == before_out


def test_links_and_special_files_are_refused_and_left_alone(place):
    photos, outside = place
    refused(photos, outside, "a.jpg", lambda s: s.symlink_to(outside / "other.xmp"), "symbolic link")
    refused(photos, outside, "b.jpg", lambda s: s.symlink_to(outside / "new.xmp"), "symbolic link")
    refused(photos, outside, "c.jpg", lambda s: s.symlink_to("/dev/zero"), "symbolic link")
    refused(photos, outside, "d.jpg", lambda s: os.mkfifo(s), "FIFO")
    refused(photos, outside, "e.jpg", lambda s: s.mkdir(), "a directory")
    refused(photos, outside, "f.jpg", lambda s: s.symlink_to(photos / "a.jpg.xmp"), "symbolic link")  # even inside
    assert not (outside / "new.xmp").exists()
    if os.geteuid() == 0:  # only root makes device nodes
        refused(photos, outside, "g.jpg", lambda s: os.mknod(s, stat.S_IFCHR | 0o600, os.makedev(1, 5)),
                "character device")
    with pytest.raises(SidecarError, match="FIFO"):  # reading one never blocks either
        read_sidecar(photos / "d.jpg")


def test_hostile_xml_is_refused_and_left_alone(place):
    photos, outside = place
    secret = outside / "secret.txt"
    cases = {
        "xxe.jpg": XXE.format(secret=secret).encode(),
        "laughs.jpg": LAUGHS.encode(),
        "invalid.jpg": FOREIGN.format(pad="").replace("</rdf:RDF>", "").encode(),
        "binary.jpg": np.random.default_rng(1).bytes(3000),
        "nul.jpg": FOREIGN.format(pad="").encode().replace(b"family", b"fam\0ly"),
    }
    for name, data in cases.items():
        side = sidecar_path(photos / name)
        side.write_bytes(data)
        before_out = snapshot(outside)
        out = write_in_time(photos / name)
        assert isinstance(out, SidecarError), f"{name}: a broken or hostile sidecar was rewritten"
        assert "left untouched" in str(out), (name, str(out))
        assert side.read_bytes() == data, name  # refused: byte-identical
        assert snapshot(outside) == before_out
    assert not [p for p in photos.iterdir() if p.name.endswith(".tmp")]


def test_utf16_and_large_sidecars_keep_every_foreign_byte(place):
    photos, outside = place
    utf16 = sidecar_path(photos / "u16.jpg")
    data16 = FOREIGN.format(pad="").replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    utf16.write_bytes(data16)
    out = write_in_time(photos / "u16.jpg")
    if isinstance(out, SidecarError):
        assert utf16.read_bytes() == data16
    else:
        assert kept(data16, utf16.read_bytes())
        assert read_sidecar(utf16)["score"] == 6.4
    big = sidecar_path(photos / "big.jpg")  # big but allowed: 2 MiB of someone's note
    data = FOREIGN.format(pad="x" * (2 << 20)).encode()
    big.write_bytes(data)
    assert write_in_time(photos / "big.jpg") == big
    assert kept(data, big.read_bytes()) and read_sidecar(big)["score"] == 6.4
    huge = sidecar_path(photos / "huge.jpg")  # over the cap: not even read
    data = FOREIGN.format(pad="x" * (MAX_SIDECAR_BYTES + 10)).encode()
    huge.write_bytes(data)
    out = write_in_time(photos / "huge.jpg")
    assert isinstance(out, SidecarError) and out.errno == errno.EFBIG and "MiB" in str(out)
    assert huge.read_bytes() == data
    hard = sidecar_path(photos / "hard.jpg")  # a hard link to a file outside: replaced by rename, never written in
    os.link(outside / "other.xmp", hard)
    before = (outside / "other.xmp").read_bytes()
    assert write_in_time(photos / "hard.jpg") == hard
    assert (outside / "other.xmp").read_bytes() == before
    assert kept(before, hard.read_bytes())


def photo(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_watcher_passes_hostile_sidecars_and_cleans_its_temp_files(tmp_path, hostile_daemon):
    folder, outside = tmp_path / "import", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "other.xmp").write_text(FOREIGN.format(pad=""))
    stale = folder / ".IMG_0000.jpg.xmp.asecritic-AbCd1234.tmp"  # left by a killed daemon: removed on watch
    theirs = folder / ".IMG_0000.jpg.xmp.k3j9x2ab.tmp"  # not ours: stays
    stale.write_bytes(b"<half a sidecar")
    theirs.write_bytes(b"someone else's")
    hostile = {
        "IMG_0001.jpg": lambda s: os.mkfifo(s),
        "IMG_0002.jpg": lambda s: s.symlink_to(outside / "other.xmp"),
        "IMG_0003.jpg": lambda s: s.symlink_to(outside / "created.xmp"),
        "IMG_0004.jpg": lambda s: s.write_bytes(LAUGHS.encode()),
        "IMG_0005.jpg": lambda s: s.symlink_to("/dev/zero"),
    }
    for i, (name, make) in enumerate(hostile.items()):
        (folder / name).write_bytes(photo(i))
        make(sidecar_path(folder / name))
    good = [folder / f"IMG_{i:04d}.jpg" for i in range(10, 16)]
    for i, p in enumerate(good):
        p.write_bytes(photo(100 + i))
    before_out = snapshot(outside)
    with hostile_daemon.client(timeout=30) as c:
        c.request("watch_add", {"path": str(folder)})
        deadline = time.monotonic() + 120
        names = [str(folder / n) for n in hostile] + [str(p) for p in good]
        while True:
            rows = {r["path"]: r for r in c.request("watch_files", {"path": str(folder)}).result["files"]}
            if all(rows.get(n, {}).get("state") in (P.DONE, P.FAILED) for n in names):
                break
            assert time.monotonic() < deadline, {n: rows.get(n, {}).get("state") for n in names}
            time.sleep(0.3)
        assert c.ping()["state"] == "ready"
        c.request("watch_remove", {"path": str(folder)})
    for p in good:  # the FIFO did not hold up the watcher thread
        assert rows[str(p)]["state"] == P.DONE and read_sidecar(p)["score"] is not None
    for name in hostile:
        row = rows[str(folder / name)]
        assert row["state"] == P.FAILED and row["error"]["code"] == "sidecar", (name, row)
    assert stat.S_ISFIFO(os.lstat(sidecar_path(folder / "IMG_0001.jpg")).st_mode)
    assert sidecar_path(folder / "IMG_0004.jpg").read_bytes() == LAUGHS.encode()
    assert snapshot(outside) == before_out and not (outside / "created.xmp").exists()
    assert not stale.exists() and theirs.read_bytes() == b"someone else's"
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp") and n != theirs.name]
