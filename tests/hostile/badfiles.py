"""Generate many kinds of bad photo file (and a few odd but valid ones) in a folder, in about a second.

    make_bad_files(folder) -> [(kind, path), ...]      EXPECT[kind] -> "ok" | "error" | "any" | "warn"

"ok": a valid image that must be critiqued; "error": must be a clear error (bad_image / not_found / too_large);
"any": either (thin images, damage a decoder may or may not notice), never a hang or an `internal` error;
"warn": damaged: critiqued with `warnings` in the result, or a clear error; never critiqued without a word.

Special files (FIFOs, sockets, links to devices) are made only where the platform allows; the list says what
was made. Nothing here imports the project, so bench/hostile.py can use it as it is.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["make_bad_files", "EXPECT", "TOO_LARGE_KINDS"]

EXPECT: dict[str, str] = {}
#: Kinds that must be refused as too_large (over the pixel limit, the memory budget the suite configures, or the
#: file cap), not merely as bad_image.
TOO_LARGE_KINDS = {"png_dims_over_limit", "jpeg_dims_over_limit", "tiff_dims_over_limit", "webp_dims_over_limit",
                   "png_196mp_zeros", "tiff_float_rgb_144mp_header", "dng_dims_over_limit"}


def _photo(seed: int = 0, size=(96, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = np.stack([x * 255 // size[0], y * 255 // size[1], (x + y) * 127 // sum(size)], -1)
    noise = rng.integers(0, 40, (size[1], size[0], 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(w: int, h: int, rows: bytes | None = None, color: int = 2, depth: int = 8, extra: bytes = b"") -> bytes:
    """A PNG with a real IHDR; `rows` = the already compressed IDAT (default: a few bytes of zeros)."""
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0)
    idat = rows if rows is not None else zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _zero_rows(w: int, h: int, bpp: int) -> bytes:
    """zlib stream of h rows of (filter 0 + w*bpp zeros), compressed in pieces: a bomb without the memory."""
    z = zlib.compressobj(9)
    row = b"\0" * (1 + w * bpp)
    block = row * max(1, (1 << 22) // len(row))
    rows_per_block = len(block) // len(row)
    out, done = [], 0
    while done < h:
        n = min(rows_per_block, h - done)
        out.append(z.compress(block if n == rows_per_block else row * n))
        done += n
    out.append(z.flush())
    return b"".join(out)


def _jpeg_with_dims(w: int, h: int) -> bytes:
    """A real JPEG whose SOF0 says w x h."""
    data = bytearray(_encode(_photo(1, (64, 48)), "JPEG", quality=80))
    i = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, h, w)
    return bytes(data)


def _tiff_header(w: int, h: int, bits: int = 8, spp: int = 3, fmt: int = 1, strip: bytes = b"\0" * 16) -> bytes:
    """A little-endian TIFF with one strip (usually far too short for the size it declares)."""
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, bits), (259, 3, 1, 1), (262, 3, 1, 2 if spp >= 3 else 1),
               (273, 4, 1, 0), (277, 3, 1, spp), (278, 4, 1, h), (279, 4, 1, len(strip)), (284, 3, 1, 1),
               (339, 3, 1, fmt)]
    ifd_off = 8
    data_off = ifd_off + 2 + 12 * len(entries) + 4
    out = bytearray(b"II*\0" + struct.pack("<I", ifd_off) + struct.pack("<H", len(entries)))
    for tag, typ, count, value in entries:
        if tag == 273:
            value = data_off
        fmt_v = "<HHIH2x" if typ == 3 else "<HHII"
        out += struct.pack(fmt_v, tag, typ, count, value)
    out += struct.pack("<I", 0) + strip
    return bytes(out)


def _gif_with_dims(w: int, h: int) -> bytes:
    data = bytearray(_encode(_photo(2, (32, 24)).convert("P"), "GIF"))
    struct.pack_into("<HH", data, 6, w, h)
    i = data.find(b"\x2c")  # the image descriptor
    struct.pack_into("<HH", data, i + 5, w, h)
    return bytes(data)


def _webp_with_dims(w: int, h: int) -> bytes:
    """A VP8X header declaring w x h (canvas up to 2^24), followed by a small real VP8L image."""
    small = _encode(_photo(3, (32, 24)), "WEBP", lossless=True)
    chunk = small[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _dng(rgb: np.ndarray, path: Path) -> bytes | None:
    """A small uncompressed 12-bit RGGB DNG written by pidng (None when pidng is missing)."""
    try:
        import pidng  # noqa: F401
    except ImportError:
        return None
    from tests.imageio_helpers import pidng_dng

    dng = pidng_dng(path.with_suffix(".dng"), rgb)
    data = dng.read_bytes()
    dng.unlink()
    return data


def _patch_ifd0(data: bytes, values: dict[int, int]) -> bytes:
    """Set SHORT/LONG tags of a little-endian TIFF's first IFD (e.g. a DNG's width and height)."""
    out = bytearray(data)
    (off,) = struct.unpack_from("<I", out, 4)
    (n,) = struct.unpack_from("<H", out, off)
    for k in range(n):
        e = off + 2 + 12 * k
        tag, typ = struct.unpack_from("<HH", out, e)
        if tag in values:
            struct.pack_into("<H" if typ == 3 else "<I", out, e + 8, values[tag])
    return bytes(out)


def _flip(data: bytes, seed: int, n: int, start: float = 0.0, end: float = 1.0) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    lo, hi = int(len(out) * start), max(int(len(out) * start) + 1, int(len(out) * end))
    for i in rng.integers(lo, hi, n):
        out[int(i)] ^= 1 << int(rng.integers(0, 8))
    return bytes(out)


def _garbage_middle(data: bytes, seed: int, nbytes: int = 2048) -> bytes:
    mid = len(data) // 2
    return data[:mid] + np.random.default_rng(seed).bytes(nbytes) + data[mid:]


def _cut(data: bytes, frac: float) -> bytes:
    return data[: max(1, int(len(data) * frac))]


def _files(folder: Path) -> dict[str, tuple[str, bytes | None]]:
    """kind -> (file name, bytes); the special files are made by make_bad_files itself."""
    photo = _photo(7, (160, 120))
    jpg, png = _encode(photo, "JPEG", quality=90), _encode(photo, "PNG")
    tif, webp = _encode(photo, "TIFF"), _encode(photo, "WEBP", quality=80)
    rgb = np.asarray(photo)
    dng = _dng(rgb, folder / "tmp-dng.dng")
    rng = np.random.default_rng(15)
    grad16 = (np.mgrid[0:64, 0:96][1] * 680).astype(np.uint16)
    f: dict[str, tuple[str, bytes | None]] = {
        # not images at all
        "zero_bytes": ("zero.jpg", b""),
        "one_byte": ("one.jpg", b"\xff"),
        "jpeg_soi_only": ("soi.jpg", b"\xff\xd8"),
        "png_signature_only": ("sig.png", b"\x89PNG\r\n\x1a\n"),
        "tiff_magic_only": ("magic.tif", b"II*\0"),
        "text_file": ("notes.jpg", b"This is a text file with a photo's name.\n" * 40),
        "random_bytes_jpg": ("random.jpg", rng.bytes(20000)),
        "random_bytes_png": ("random.png", rng.bytes(5000)),
        "random_bytes_dng": ("random.dng", rng.bytes(30000)),
        "html_file": ("page.jpg", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>\n"),
        "zip_file": ("archive.jpg", b"PK\x03\x04" + rng.bytes(500)),
        "pdf_file": ("doc.png", b"%PDF-1.7\n" + rng.bytes(800)),
        "elf_binary": ("program.jpg", b"\x7fELF\x02\x01\x01" + rng.bytes(2000)),
        "utf16_text": ("u16.jpg", "not an image \u2014 UTF-16".encode("utf-16")),
        "nul_bytes": ("nul.jpg", b"\0" * 4096),
        # formats we do not decode
        "gif_image": ("anim.gif.jpg", _encode(photo.convert("P"), "GIF")),
        "ico_image": ("icon.png", _encode(photo.resize((32, 32)), "ICO")),
        "eps_header": ("page.tif", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n" + b"0 0 moveto\n" * 50),
        "pcx_image": ("pic.jpg", _encode(photo, "PCX")),
        # decompression bombs and huge headers
        "png_dims_over_limit": ("huge.png", _png(100_000, 100_000)),
        "png_196mp_zeros": ("bomb196.png", _png(14_000, 14_000, _zero_rows(14_000, 14_000, 3))),
        "jpeg_dims_over_limit": ("huge.jpg", _jpeg_with_dims(65_000, 65_000)),
        "gif_dims_max": ("huge.gif", _gif_with_dims(65_535, 65_535)),
        "tiff_dims_over_limit": ("huge.tif", _tiff_header(100_000, 100_000)),
        "tiff_float_rgb_144mp_header": ("float144.tif", _tiff_header(12_000, 12_000, 32, 3, 3)),
        "webp_dims_over_limit": ("huge.webp", _webp_with_dims(16_384, 16_384)),
        "bmp_dims_header": ("huge.bmp", _bmp_with_dims(30_000, 30_000)),
        "png_ztxt_bomb": ("ztxt.png", _png(8, 8, zlib.compress(b"\0" * (9 * 8 * 3)), extra=_chunk(
            b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * (8 << 20))))),
        # thin and tiny images (valid: critiqued, or failed alone)
        "thin_8x2000": ("thin8x2000.png", _encode(_photo(4, (8, 2000)), "PNG")),
        "thin_1x10000": ("thin1x10000.png", _encode(_photo(5, (1, 10000)), "PNG")),
        "thin_10000x1": ("thin10000x1.png", _encode(_photo(6, (10000, 1)), "PNG")),
        "tiny_1x1_jpeg": ("one_px.jpg", _encode(_photo(8, (1, 1)), "JPEG")),
        "tiny_2x2_png": ("two_px.png", _encode(_photo(9, (2, 2)), "PNG")),
        # odd but valid encodings
        "tiff_float_grey": ("float_grey.tif", _encode(Image.fromarray(rgb[..., 0].astype(np.float32) / 255), "TIFF")),
        "tiff_float_rgb": ("float_rgb.tif", _tiff_float_rgb(rgb)),
        "tiff_16bit_grey": ("grey16.tif", _encode(Image.fromarray(grad16), "TIFF")),
        "png_16bit_grey": ("grey16.png", _encode(Image.fromarray(grad16), "PNG")),
        "png_palette_alpha": ("pal.png", _encode(photo.convert("P"), "PNG", transparency=0)),
        "png_grey_alpha": ("la.png", _encode(photo.convert("LA"), "PNG")),
        "jpeg_cmyk": ("cmyk.jpg", _encode(photo.convert("CMYK"), "JPEG")),
        "jpeg_progressive": ("prog.jpg", _encode(photo, "JPEG", progressive=True)),
        "bmp_image": ("ok.bmp", _encode(photo, "BMP")),
        # wrong extensions (content decides)
        "png_named_jpg": ("really_png.jpg", png),
        "jpeg_named_png": ("really_jpeg.png", jpg),
        "tiff_named_webp": ("really_tiff.webp", tif),
        "jpeg_named_dng": ("really_jpeg.dng", jpg),
        # truncated
        "jpeg_truncated": ("cut.jpg", _cut(jpg, 0.5)),
        "jpeg_header_only": ("cut_header.jpg", _cut(jpg, 0.05)),
        "png_truncated": ("cut.png", _cut(png, 0.5)),
        "tiff_truncated": ("cut.tif", _cut(tif, 0.5)),
        "webp_truncated": ("cut.webp", _cut(webp, 0.5)),
        # damaged but maybe decodable
        "jpeg_garbage_middle": ("garbage.jpg", _garbage_middle(jpg, 1)),  # seeds libjpeg decodes past
        "jpeg_garbage_middle_2": ("garbage2.jpg", _garbage_middle(jpg, 4)),
        "jpeg_garbage_middle_3": ("garbage3.jpg", _garbage_middle(jpg, 0)),  # and one it gives up on
        "jpeg_bitflips_data": ("flip_data.jpg", _flip(jpg, 12, 20, 0.3, 0.95)),
        "jpeg_bitflips_header": ("flip_head.jpg", _flip(jpg, 13, 12, 0.0, 0.1)),
        "png_bitflips_idat": ("flip.png", _flip(png, 14, 10, 0.3, 0.9)),
        "tiff_bitflips_ifd": ("flip.tif", _flip(_flip(tif, 16, 8, 0.0, 0.02), 17, 8, 0.98, 1.0)),
        "tiff_bitflips_data": ("flip_data.tif", _flip(tif, 17, 30, 0.2, 0.8)),
        "webp_bitflips": ("flip.webp", _flip(webp, 18, 10, 0.2, 0.9)),
        "jpeg_bad_exif": ("bad_exif.jpg", jpg[:2] + b"\xff\xe1\x00\x40Exif\0\0MM\0*\xff\xff\xff\xf0" + rng.bytes(48)
                          + jpg[2:]),
        "jpeg_bad_icc": ("bad_icc.jpg", _encode(photo, "JPEG", icc_profile=rng.bytes(600))),
        # polyglots
        "jpeg_zip_polyglot": ("poly_zip.jpg", jpg + b"PK\x03\x04" + rng.bytes(300)),
        "png_html_polyglot": ("poly_html.png", png + b"<html><script>alert(1)</script></html>"),
        "gifar": ("gifar.jpg", _encode(photo.convert("P"), "GIF") + b"PK\x03\x04" + rng.bytes(200)),
    }
    if dng is not None:
        f.update({
            "dng_valid": ("valid.dng", dng),
            "dng_truncated": ("cut.dng", _cut(dng, 0.3)),
            "dng_bitflips": ("flip.dng", _flip(dng, 19, 40, 0.0, 0.05)),
            "dng_dims_over_limit": ("huge.dng", _patch_ifd0(dng, {256: 60_000, 257: 60_000, 322: 60_000,
                                                                  323: 60_000})),
            "dng_named_tif": ("raw_inside.tif", dng),
        })
    return f


def _bmp_with_dims(w: int, h: int) -> bytes:
    data = bytearray(_encode(_photo(10, (16, 16)), "BMP"))
    struct.pack_into("<ii", data, 18, w, h)
    return bytes(data)


def _tiff_float_rgb(rgb: np.ndarray) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb.astype(np.float32) / 255.0, photometric="rgb")
    return buf.getvalue()


_EXPECT_OK = {"tiff_float_grey", "tiff_float_rgb", "tiff_16bit_grey", "png_16bit_grey", "png_palette_alpha",
              "png_grey_alpha", "jpeg_cmyk", "jpeg_progressive", "bmp_image", "png_named_jpg", "jpeg_named_png",
              "tiff_named_webp", "jpeg_zip_polyglot", "png_html_polyglot", "dng_valid", "dng_named_tif",
              "jpeg_bad_exif"}
_EXPECT_ANY = {"tiny_1x1_jpeg", "tiny_2x2_png", "thin_8x2000", "thin_1x10000", "thin_10000x1", "jpeg_bitflips_data",
               "jpeg_bitflips_header", "tiff_bitflips_data", "tiff_bitflips_ifd", "webp_bitflips", "dng_bitflips",
               "dng_truncated", "png_ztxt_bomb", "jpeg_named_dng", "bmp_dims_header", "jpeg_bad_icc", "jpeg_truncated"}
_EXPECT_WARN = {"jpeg_garbage_middle", "jpeg_garbage_middle_2", "jpeg_garbage_middle_3"}


def _expect(kind: str) -> str:
    if kind in _EXPECT_WARN:
        return "warn"
    if kind in _EXPECT_OK:
        return "ok"
    if kind in _EXPECT_ANY:
        return "any"
    return "error"


def make_bad_files(folder) -> list[tuple[str, Path]]:
    """Write every kind of bad file into `folder` (created if needed); returns [(kind, path)] in a fixed order.

    Args:
        folder: where to put them. Links that point "out" point to files outside it (in the system or in a
            sibling folder `<folder>.outside`), never to anything a test would mind being read.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, Path]] = []
    files = _files(folder)
    names = [name for name, _ in files.values()]
    assert len(set(names)) == len(names), "two kinds share a file name"
    for kind, (name, data) in files.items():
        p = folder / name
        p.write_bytes(data)
        out.append((kind, p))
        EXPECT[kind] = _expect(kind)
    outside = folder.parent / f"{folder.name}.outside"
    outside.mkdir(exist_ok=True)
    secret = outside / "secret.jpg"
    secret.write_bytes(_encode(_photo(20, (64, 48)), "JPEG"))

    def special(kind: str, name: str, make, expect: str = "error") -> None:
        p = folder / name
        try:
            if os.path.lexists(p):
                if p.is_dir() and not p.is_symlink():
                    p.rmdir()
                else:
                    p.unlink()
            make(p)
        except (OSError, NotImplementedError, AttributeError):
            return  # not possible here (e.g. no mkfifo): the kind is simply not in the list
        out.append((kind, p))
        EXPECT[kind] = expect

    special("fifo", "fifo.jpg", lambda p: os.mkfifo(p))
    special("fifo_raw_ext", "fifo.nef", lambda p: os.mkfifo(p))
    special("link_dev_zero", "zero_dev.jpg", lambda p: p.symlink_to("/dev/zero"))
    special("link_dev_null", "null_dev.png", lambda p: p.symlink_to("/dev/null"))
    special("link_dev_urandom", "urandom.tif", lambda p: p.symlink_to("/dev/urandom"))
    special("link_proc_file", "proc.jpg", lambda p: p.symlink_to("/proc/self/status"))
    special("link_dangling", "dangling.jpg", lambda p: p.symlink_to(folder / "does-not-exist.jpg"))
    special("link_loop", "loop.jpg", lambda p: p.symlink_to(p))
    special("link_to_dir", "dir_link.jpg", lambda p: p.symlink_to("/tmp"))
    special("link_out_text", "passwd.jpg", lambda p: p.symlink_to("/etc/passwd"))
    special("link_out_photo", "outside.jpg", lambda p: p.symlink_to(secret), expect="any")
    special("dir_named_jpg", "folder.jpg", lambda p: p.mkdir())
    special("socket", "sock.jpg", _make_socket)
    return out


def _make_socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(p))
    finally:
        s.close()  # the socket file stays, with no one listening
