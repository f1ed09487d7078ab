"""The demo's HTML report: a sortable summary table first, then one card per photo (torch-free).

    rows = [{"name", "note", "photo", "overlay", "thumb", "sidecar", "rating", "result"} | {..., "error"}]
    write_report(out_dir, rows, model, seconds)   # -> out_dir / "report.html"

The page is one self-contained HTML file with relative links to the photos, overlays and thumbnails beside it, so
it opens from disk (file://) with no server. The summary table (thumbnail with the saliency overlay, score, stars,
main remark) comes first, best score first; clicking a column header sorts by it (a few lines of plain JS, no
library; a second click reverses). The heat overlay has a legend: the colour bar with what its ends mean and
ticks at each decade of weight below the peak (ase_model.overlay.heat_legend; the heat map's scale is a log
scale, see ase_model/overlay.py).
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["MAX_SIDE", "THUMB_SIDE", "legend_html", "overlay_jpeg", "summary_table", "write_report"]

MAX_SIDE = 1024  # the cards' overlays, long side in pixels
THUMB_SIDE = 360  # the table's thumbnails: drawn at 180 CSS px, so sharp on a 2x screen
OPACITY = 0.7

# Click a header to sort by its column; a second click reverses. Numbers sort best first on the first click,
# text A-Z with numbers in file names read as numbers (IMG_2 before IMG_10); each cell carries its sort key in
# data-sort, so what is shown (stars, a thumbnail) needs no parsing.
SORT_JS = """
const collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
for (const th of document.querySelectorAll("table.summary th[data-type]")) {
  th.querySelector("button").addEventListener("click", () => {
    const table = th.closest("table"), body = table.tBodies[0], col = th.cellIndex;
    const num = th.dataset.type === "number", was = th.getAttribute("aria-sort");
    const asc = was ? was === "descending" : !num;
    const key = (tr) => tr.cells[col].dataset.sort;
    const rows = [...body.rows].sort((a, b) => {
      const c = num ? Number(key(a)) - Number(key(b)) : collator.compare(key(a), key(b));
      return asc ? c : -c;
    });
    for (const h of table.querySelectorAll("th")) h.removeAttribute("aria-sort");
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    body.append(...rows);
  });
}
"""

CSS = """body{font:15px/1.45 system-ui,sans-serif;background:#15171a;color:#e6e6e6;margin:2em auto;max-width:1100px}
.card{background:#1f2226;border-radius:8px;padding:1em 1.4em;margin:1.2em 0}
h2 small{color:#9aa;font-weight:normal;font-size:.8em} .pics{display:flex;gap:1em}
figure{margin:0;flex:1} img{width:100%;border-radius:4px} figcaption{color:#9aa;font-size:.85em}
.score b{font-size:1.8em} dt{font-weight:bold;margin-top:.4em} dd{margin:0 0 0 1em}
.tag{display:inline-block;background:#2d3a4a;border-radius:10px;padding:0 .6em;margin:.15em;font-size:.85em}
.meta{color:#889;font-size:.8em} .err{color:#f77}
table.summary{border-collapse:collapse;width:100%;background:#1f2226;border-radius:8px}
.summary th,.summary td{padding:.35em .7em;text-align:left;vertical-align:middle;border-bottom:1px solid #2b2f34}
.summary th button{font:inherit;font-weight:bold;color:inherit;background:none;border:0;padding:0;cursor:pointer}
.summary th button:hover{text-decoration:underline} .summary th[aria-sort=ascending] button::after{content:" \\25B2"}
.summary th[aria-sort=descending] button::after{content:" \\25BC"}
.summary td.thumb{width:180px} .summary td.thumb img{width:180px;display:block}
.summary td.num{font-variant-numeric:tabular-nums;font-size:1.25em;font-weight:bold}
.summary td.stars{color:#f5c542;white-space:nowrap;letter-spacing:.05em} .summary a{color:inherit}
.legend{display:flex;align-items:center;gap:.8em;margin:.6em 0 1em;font-size:.85em;color:#bbc}
.legend .scale{flex:0 0 320px} .legend .bar{position:relative;height:14px;border-radius:3px}
.legend .clear{position:absolute;left:0;top:0;bottom:0;border-radius:3px 0 0 3px;
 background:repeating-linear-gradient(45deg,#555 0 3px,#2a2a2a 3px 6px)}
.legend .ticks{position:relative;height:1.2em;margin-top:2px}
.legend .ticks span{position:absolute;transform:translateX(-50%);white-space:nowrap}
.legend .ticks span:first-child{transform:none} .legend .ticks span:last-child{transform:translateX(-100%)}
figcaption .legend{margin:.3em 0 0;font-size:.95em} figcaption .legend .scale{flex-basis:180px}"""


def _scaled(photo: Path, max_side: int) -> np.ndarray:
    from ase_model.imageio import load_image

    return np.asarray(load_image(photo, max_side=max_side))


def overlay_jpeg(photo: Path, saliency_png: bytes, out: Path, max_side: int = MAX_SIDE) -> None:
    """The photo, at most `max_side` px long, with its saliency map drawn over it as a heat map -> JPEG.

    Drawn at the size it is shown, so a thumbnail's overlay is as smooth as the big one.

    Args:
        photo: the photo's path.
        saliency_png: the map as the daemon sends it (PNG bytes).
        out: the JPEG to write.
        max_side: the long side in pixels.
    """
    from ase_model.overlay import compose
    from ase_model.saliency import from_png

    rgb = _scaled(photo, max_side)
    Image.fromarray(compose(rgb, from_png(saliency_png), opacity=OPACITY)).save(out, quality=88)


def legend_html(css_class: str = "legend") -> str:
    """The heat overlay's legend: a colour bar (hatched where the photo stays clear), ticks, what the ends mean.

    Args:
        css_class: the legend's class attribute (the page's CSS styles "legend").
    """
    from ase_model.overlay import heat_legend

    lg = heat_legend()
    clear = lg["clear"] * 100
    stops = ", ".join(f"{c} {x * 100:.1f}%" for x, c in lg["stops"])
    ticks = "".join(f'<span style="left:{x * 100:.1f}%">{html.escape(t)}</span>' for x, t in lg["ticks"])
    return (f'<div class="{html.escape(css_class)}" role="img" aria-label="heat overlay legend: colour from '
            f'{html.escape(lg["low"])} to {html.escape(lg["high"])}">'
            f'<span class=end>low: {html.escape(lg["low"])}</span>'
            f'<div class=scale><div class=bar style="background:linear-gradient(to right, {stops})">'
            f'<div class=clear style="width:{clear:.1f}%" title="no colour: the photo shows as it is"></div></div>'
            f'<div class=ticks>{ticks}</div></div>'
            f'<span class=end>high: {html.escape(lg["high"])}</span></div>')


def _anchor(name: str) -> str:
    return "photo-" + "".join(c if c.isalnum() else "-" for c in name)


def _stars(rating: int) -> str:
    return "★" * rating + "☆" * (5 - rating)


def summary_table(rows: list[dict]) -> str:
    """The summary table, best score first (failed photos last): thumbnail, name, score, stars, main remark.

    Args:
        rows: the report's rows (see the module's docstring); "thumb" is the thumbnail's relative path.
    """
    from ase_model.remarks import main_remark

    def order(r):
        return (0, -r["result"]["score"], r["name"]) if "result" in r else (1, 0.0, r["name"])

    body = []
    for r in sorted(rows, key=order):
        name = html.escape(r["name"])
        thumb = (f'<a href="#{_anchor(r["name"])}"><img src="{html.escape(r["thumb"])}" alt="{name} with its '
                 f'saliency overlay" loading=lazy></a>' if r.get("thumb") else "")
        if "result" in r:
            score, rating = r["result"]["score"], r["rating"]
            cells = (f'<td class=num data-sort="{score:.3f}">{score:.1f}</td>'
                     f'<td class=stars data-sort="{rating}" aria-label="{rating} of 5 stars">{_stars(rating)}</td>'
                     f'<td class=remark data-sort="{html.escape(main_remark(r["result"]))}">'
                     f'{html.escape(main_remark(r["result"]))}</td>')
        else:
            error = html.escape(r["error"])
            cells = (f'<td class=num data-sort="-1">–</td><td class=stars data-sort="-1">–</td>'
                     f'<td class="remark err" data-sort="{error}">{error}</td>')
        body.append(f'<tr data-name="{name}"><td class=thumb>{thumb}</td>'
                    f'<td class=name data-sort="{name}"><a href="#{_anchor(r["name"])}">{name}</a></td>{cells}</tr>')
    head = ('<tr><th scope=col>Photo + saliency</th>'
            '<th scope=col data-type=text data-key=name><button type=button>Name</button></th>'
            '<th scope=col data-type=number data-key=score aria-sort=descending><button type=button>Score</button></th>'
            '<th scope=col data-type=number data-key=stars><button type=button>Stars</button></th>'
            '<th scope=col data-type=text data-key=remark><button type=button>Main remark</button></th></tr>')
    return (f'<table class=summary id=summary><caption hidden>The photos, best score first; click a column '
            f'header to sort</caption><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>')


def _card(r: dict) -> str:
    from ase_model.attributes import ATTRIBUTES

    anchor = _anchor(r["name"])
    res = r.get("result")
    if res is None:
        return (f'<section class=card id="{anchor}"><h2>{html.escape(r["name"])}</h2><p class=err>'
                f'{html.escape(r["error"])}</p></section>')
    attrs = "".join(f"<dt>{html.escape(ATTRIBUTES.get(k, k))}</dt><dd>{html.escape(v)}</dd>"
                    for k, v in res.get("attributes", {}).items())
    tags = " ".join(f"<span class=tag>{html.escape(t)}</span>" for t in res.get("tags", []))
    return f"""<section class=card id="{anchor}">
<h2>{html.escape(r['name'])} <small>{html.escape(r['note'])}</small></h2>
<div class=pics><figure><img src="{html.escape(r['photo'])}" alt=""><figcaption>photo</figcaption></figure>
<figure><img src="{html.escape(r['overlay'])}" alt=""><figcaption>aesthetic saliency{legend_html()}</figcaption>
</figure></div>
<p class=score><b>{res['score']:.1f}</b>/10 &nbsp; {_stars(r['rating'])}</p>
<dl>{attrs}</dl><p>{tags}</p><p class=meta>sidecar: {html.escape(r['sidecar'])}</p></section>"""


def write_report(out_dir: Path, rows: list[dict], model: str, seconds: float) -> Path:
    """Write `out_dir/report.html`: the summary table with the legend, then a card per photo.

    Args:
        out_dir: the folder the page goes in (the rows' paths are relative to it).
        rows: one dict per photo (see the module's docstring).
        model: the model's name, shown at the top.
        seconds: how long the critiques took, shown at the top.
    """
    page = f"""<!doctype html><meta charset=utf-8><title>ASE-MLLM demo report</title>
<style>{CSS}</style>
<h1>ASE-MLLM demo report</h1>
<p>Model <code>{html.escape(model)}</code> — {len(rows)} photos in {seconds:.1f} s. The starter model is a
demo-grade critic of the technical side of aesthetics (docs/starter-model.md).</p>
<h2 id=summary-title>Summary</h2>
<p class=meta>Best score first; click a column header to sort, again to reverse. The thumbnails show where the
critique's attention lies (heat overlay on a log scale: the legend's ticks are fractions of the photo's peak
weight); a photo's name leads to its full critique below.</p>
{legend_html()}
{summary_table(rows)}
{''.join(_card(r) for r in rows)}
<script>{SORT_JS}</script>
"""
    path = Path(out_dir) / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
