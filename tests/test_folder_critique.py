"""Folder critiques end to end: `ase-mllm critique DIR` (the installed front: the real store, the real XMP writer)
and `ase-client critique DIR` (a real daemon), with a real tiny model; `ase-mllm info` with no folder (the starter).

A shoot: a RAW+JPEG pair (pidng DNG + JPEG, one frame), a lone JPEG with the user's own sidecar, a photo in a
sub-folder, a hidden file, a hidden folder, a sidecar and a text file that must not be taken."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from ase_daemon import protocol as P
from conftest import DaemonProcess, daemon_env
from imageio_helpers import pidng_dng
from PIL import Image, ImageEnhance

FOREIGN_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmp:Rating="2">
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""
TOP = {"IMG_0001.jpg", "IMG_0002.jpg"}  # what the shoot's top level critiques (the pair once, as its JPEG)


def _variant(im: Image.Image, i: int) -> Image.Image:
    """A distinct photo from a source one (the store keys by content)."""
    w, h = im.size
    im = im.crop((i % 5 * 3, i % 3 * 2, w - i % 4, h - i % 2)).resize((160, 112))
    return ImageEnhance.Brightness(im).enhance(0.7 + 0.05 * i)


def make_shoot(folder, n_extra: int = 0):
    from ase_model.starter.dataset import source_photos

    src = source_photos()
    (folder / "sub").mkdir(parents=True)
    (folder / ".thumbs").mkdir()
    coffee = _variant(src["coffee"].convert("RGB"), 0)
    coffee.save(folder / "IMG_0001.jpg", quality=92)
    pidng_dng(folder / "IMG_0001.dng", np.asarray(coffee))
    _variant(src["chelsea"].convert("RGB"), 1).save(folder / "IMG_0002.jpg", quality=92)
    (folder / "IMG_0002.jpg.xmp").write_text(FOREIGN_XMP, encoding="utf-8")
    _variant(src["rocket"].convert("RGB"), 2).save(folder / "sub" / "IMG_0003.jpg", quality=92)
    _variant(src["astronaut"].convert("RGB"), 3).save(folder / ".hidden.jpg")
    _variant(src["astronaut"].convert("RGB"), 4).save(folder / ".thumbs" / "IMG_0001.jpg")
    (folder / "notes.txt").write_text("not a photo")
    names = ["coffee", "chelsea", "rocket", "astronaut", "camera", "china", "flower", "motorcycle"]
    for i in range(n_extra):
        _variant(src[names[i % len(names)]].convert("RGB"), 10 + i).save(folder / f"BURST_{i:03d}.jpg", quality=90)
    return folder


def exiftool(path) -> dict:
    r = subprocess.run(["exiftool", "-j", "-G1", "-a", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]


def mllm(tmp, model, *args, timeout=600):
    cmd = [sys.executable, "-m", "ase_daemon.mllm_cli", "critique", "--model", str(model), "--db", str(tmp / "db"),
           "--max-new-tokens", "6", *map(str, args)]
    return subprocess.run(cmd, env=daemon_env(tmp), capture_output=True, text=True, timeout=timeout)


def ranked_lines(text: str) -> list[tuple[float, str]]:
    """(score, path) of the ranked summary's lines, in the order printed."""
    out, on = [], False
    for line in text.splitlines():
        if line.startswith("ranked, best first"):
            on = True
        elif on and line.strip()[:1].isdigit() and ". " in line:
            _, rest = line.split(". ", 1)
            score, path = rest.split()[:2]
            out.append((float(score), path))
    return out


@pytest.fixture(scope="module")
def shoot(tmp_path_factory):
    return make_shoot(tmp_path_factory.mktemp("folder") / "shoot")


@pytest.fixture(scope="module")
def first_run(shoot, tiny_model_dir):
    """`ase-mllm critique shoot --recursive --format jsonl --write-xmp`: (tmp, records by name, the run)."""
    tmp = shoot.parent
    r = mllm(tmp, tiny_model_dir, shoot, "--recursive", "--format", "jsonl", "--write-xmp")
    assert r.returncode == 0, r.stdout + r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    return tmp, {os.path.relpath(x["image"], shoot): x for x in records}, r


def test_folder_recursive_pairs_once_skips_hidden_and_sidecars(first_run, shoot, tiny_model_dir):
    tmp, records, r = first_run
    assert set(records) == TOP | {"sub/IMG_0003.jpg"}
    assert records["IMG_0001.jpg"]["companions"] == [str(shoot / "IMG_0001.dng")]  # the pair: once, as its JPEG
    assert all("error" not in x and x["cached"] is False for x in records.values())
    # without --recursive: the top level only; all from the store now (no model run)
    r = mllm(tmp, tiny_model_dir, shoot, "--format", "jsonl")
    assert r.returncode == 0, r.stderr
    again = {os.path.basename(json.loads(line)["image"]): json.loads(line) for line in r.stdout.splitlines()}
    assert set(again) == TOP and all(x["cached"] for x in again.values())
    assert "2 from the store, 0 by the model now" in r.stderr


def test_write_xmp_read_back_by_exiftool(first_run, shoot):
    _, records, _ = first_run
    pair = records["IMG_0001.jpg"]
    assert pair["sidecars"] == [str(shoot / "IMG_0001.jpg.xmp"), str(shoot / "IMG_0001.dng.xmp")]
    for side in pair["sidecars"]:  # both files of the frame carry the one critique
        x = exiftool(side)
        assert float(x["XMP-asecritic:Score"]) == pytest.approx(pair["score"], abs=0.006)
        assert x["XMP-asecritic:Model"] == pair["model"]
    lone = exiftool(shoot / "IMG_0002.jpg.xmp")  # merged into the user's sidecar: their keyword and stars stay
    assert lone["XMP-dc:Subject"] == "holiday" and lone["XMP-xmp:Rating"] == 2
    assert float(lone["XMP-asecritic:Score"]) == pytest.approx(records["IMG_0002.jpg"]["score"], abs=0.006)
    tags = lone.get("XMP-lr:HierarchicalSubject") or []
    assert set(records["IMG_0002.jpg"]["tags"]) <= set([tags] if isinstance(tags, str) else tags)
    assert not (shoot / ".hidden.jpg.xmp").exists() and not (shoot / "notes.txt.xmp").exists()


def test_ranked_summary_best_first(first_run, shoot):
    _, records, r = first_run
    ranking = ranked_lines(r.stderr)  # jsonl keeps stdout parseable: the summary is on stderr
    assert [p.split(" (")[0] for _, p in ranking] == [
        x["image"] for x in sorted(records.values(), key=lambda x: (-x["score"], x["image"]))]
    assert [s for s, _ in ranking] == sorted((s for s, _ in ranking), reverse=True)
    assert "3 critiqued" in r.stderr


@pytest.mark.parametrize("fmt", ["text", "json", "jsonl", "csv", "lines"])
def test_each_format_parses(first_run, shoot, tiny_model_dir, fmt):
    tmp, records, _ = first_run
    r = mllm(tmp, tiny_model_dir, shoot, "-r", "--format", fmt)
    assert r.returncode == 0, r.stderr
    want = {x["image"]: x["score"] for x in records.values()}
    if fmt in ("json", "jsonl"):
        got = {x["image"]: x["score"] for x in map(json.loads, r.stdout.splitlines())}
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(r.stdout)))
        got = {row["image"]: float(row["score"]) for row in rows}
        assert all(row["remark"] for row in rows)
    elif fmt == "lines":
        got = {b["image"]: b["score"] for b in P.parse_lines(r.stdout)}
    else:  # text: a block per photo, then the ranked summary on stdout
        got = {p.split(" (")[0]: s for s, p in ranked_lines(r.stdout)}
        assert r.stdout.count("== ") == 3 and "(+dng)" in r.stdout
        want = {k: round(v, 1) for k, v in want.items()}
    assert got.keys() == want.keys()
    assert all(got[k] == pytest.approx(want[k], abs=0.006) for k in want)


def _interrupt_after_first(cmd, env, timeout=600) -> tuple[int, list[dict], str]:
    """Runs `cmd`, sends SIGINT as soon as its first JSON record is out; (exit code, records, stderr).

    The child gets SIGINT's default action back: a suite started in the background (`pytest &` in a script)
    inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt, as a shell intends for
    background jobs."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = proc.stdout.readline()
    assert first, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=timeout)
    return proc.returncode, [json.loads(line) for line in (first + rest).splitlines()], err


def test_interrupted_run_resumes_and_skips_what_is_done(tmp_path, tiny_model_dir):
    shoot = make_shoot(tmp_path / "shoot", n_extra=14)
    cmd = [sys.executable, "-m", "ase_daemon.mllm_cli", "critique", "--model", str(tiny_model_dir), "--db",
           str(tmp_path / "db"), "--max-new-tokens", "6", "--batch-size", "1", "--format", "jsonl", str(shoot)]
    rc, done, err = _interrupt_after_first(cmd, daemon_env(tmp_path))
    assert rc == 130, err
    assert 1 <= len(done) < 16 and "interrupted:" in err and f"{len(done)} of 16 done" in err
    r = subprocess.run(cmd, env=daemon_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    records = {x["image"]: x for x in map(json.loads, r.stdout.splitlines())}
    assert len(records) == 16
    assert all(records[x["image"]]["cached"] for x in done)  # what was done comes from the store
    assert sum(not x["cached"] for x in records.values()) == 16 - len(done)
    assert f"{len(done)} from the store, {16 - len(done)} by the model now" in r.stderr


def test_info_without_a_folder_describes_the_model_in_use(tmp_path):
    env = daemon_env(tmp_path)
    env.pop("ASE_MODEL", None)
    r = subprocess.run([sys.executable, "-m", "ase_daemon.mllm_cli", "info"], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("name") and "starter model" in out.splitlines()[0]
    for word in ("version", "size", "sources", "quality", "underexposed"):
        assert word in out, word
    assert out.index("quality") < out.index("internals:") < out.index("gates") < out.index("flops")
    r = subprocess.run([sys.executable, "-m", "ase_daemon.mllm_cli", "info", "--json"], env=env,
                       capture_output=True, text=True, timeout=600)
    info = json.loads(r.stdout)
    assert info["size_bytes"] > 1e6 and info["sources"] and info["fingerprint"].startswith("starter_model@")
    assert any(row[0].startswith("underexposed") for t in info["quality"] for row in t["rows"])
    assert info["flops"]["iasm_ratio"] > 0  # the internals keep their keys


# ---- ase-client ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def daemon(tmp_path_factory, tiny_model_dir):
    d = DaemonProcess(tmp_path_factory.mktemp("folder-daemon"), tiny_model_dir, "fd").start()
    yield d
    d.stop()


def client(daemon, tmp, *args, timeout=300):
    cmd = [sys.executable, "-m", "ase_daemon.client_cli", "--endpoint", daemon.ipc, "critique", *map(str, args)]
    return subprocess.run(cmd, env=daemon_env(tmp), capture_output=True, text=True, timeout=timeout)


def test_client_folder_pairs_formats_summary_and_sidecars(daemon, tmp_path):
    shoot = make_shoot(tmp_path / "shoot")
    r = client(daemon, tmp_path, shoot, "-r", "--format", "jsonl", "--write-xmp")
    assert r.returncode == 0, r.stderr
    records = {os.path.relpath(x["image"], shoot): x for x in map(json.loads, r.stdout.splitlines())}
    assert set(records) == TOP | {"sub/IMG_0003.jpg"}
    assert records["IMG_0001.jpg"]["companions"] == [str(shoot / "IMG_0001.dng")]
    x = exiftool(shoot / "IMG_0001.dng.xmp")
    assert float(x["XMP-asecritic:Score"]) == pytest.approx(records["IMG_0001.jpg"]["score"], abs=0.006)
    lone = exiftool(shoot / "IMG_0002.jpg.xmp")
    assert lone["XMP-dc:Subject"] == "holiday" and lone["XMP-xmp:Rating"] == 2
    ranking = ranked_lines(r.stderr)
    assert [p for _, p in ranking] == [x["image"] for x in sorted(records.values(),
                                                                    key=lambda x: (-x["score"], x["image"]))]
    r = client(daemon, tmp_path, shoot, "--format", "csv")  # the top level; the daemon's store answers
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert {os.path.basename(row["image"]) for row in rows} == TOP and all(row["cached"] == "True" for row in rows)
    r = client(daemon, tmp_path, shoot, "--format", "lines")  # the plugin's contract: blocks only, no summary
    assert {os.path.basename(b["image"]) for b in P.parse_lines(r.stdout)} == TOP and "ranked" not in r.stderr
    r = client(daemon, tmp_path, shoot, "-r")
    assert r.returncode == 0 and r.stdout.count("== ") == 3 and "ranked, best first (3 photos)" in r.stdout


def test_client_interrupted_then_resumed_from_the_store(daemon, tmp_path):
    shoot = make_shoot(tmp_path / "shoot", n_extra=14)
    cmd = [sys.executable, "-m", "ase_daemon.client_cli", "--endpoint", daemon.ipc, "critique", str(shoot),
           "--format", "jsonl", "--parallel", "1"]
    rc, done, err = _interrupt_after_first(cmd, daemon_env(tmp_path))
    assert rc == 130, err
    assert 1 <= len(done) < 16 and f"{len(done)} of 16 done" in err
    r = subprocess.run(cmd, env=daemon_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    records = {x["image"]: x for x in map(json.loads, r.stdout.splitlines())}
    assert len(records) == 16 and all(records[x["image"]]["cached"] for x in done)
