"""The inspection report's page: one self-contained HTML file (inline CSS and script, no asset
from the internet) beside its plots (``plots/``) and thumbnails (``thumbs/``)."""
from __future__ import annotations

import html
import json

from .inspect_stats import Stats

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em;color:#222}
h1{margin:.6em 0 .2em} h2{border-bottom:1px solid #ccc;padding-top:.6em}
table{border-collapse:collapse} td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
.plots img{max-width:48%;margin:4px} .cls{border:1px solid #ddd;border-radius:6px;margin:10px 0;padding:6px 10px}
.cls.hidden,.kwgrid.hidden{display:none} .grid{display:flex;flex-wrap:wrap;gap:8px}
.side{flex:1;min-width:300px} .card{width:150px;font-size:11px;border:1px solid #eee;padding:3px;overflow-wrap:anywhere}
.card img{display:block;max-width:140px;max-height:140px} .suspect .card{background:#fff3f0}
.clean .card{background:#f2fff2} .noise{font-weight:bold} input#filter{font-size:16px;width:24em}
.kw{color:#355e9c} .missing{color:#a00}
"""

SCRIPT = """
(function(){
  var box=document.getElementById('filter');
  function apply(){
    var q=box.value.trim().toLowerCase(), shown=0;
    document.querySelectorAll('section.cls').forEach(function(s){
      var hit=!q||s.dataset.name.toLowerCase().indexOf(q)>=0||s.dataset.wnid.toLowerCase()===q;
      s.classList.toggle('hidden',!hit); if(hit) shown++;
    });
    document.getElementById('shown').textContent=shown;
  }
  box.addEventListener('input',apply); apply();
  var sel=document.getElementById('kw');
  function pick(){document.querySelectorAll('.kwgrid').forEach(function(g){
    g.classList.toggle('hidden',g.dataset.kw!==sel.value);});}
  if(sel){sel.addEventListener('change',pick); pick();}
})();
"""


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _card(stats: Stats, row: int, info: dict, thumbs: dict[int, str]) -> str:
    t = stats.table
    index = t["index"][row].as_py()
    kws = [stats.keyword_names[k] for k in t["keyword_ids"][row].as_py()]
    labels = zip(t["label_ids"][row].as_py()[:5], t["label_weights"][row].as_py()[:5])
    thumb = thumbs.get(index, "")
    img = (f'<img src="thumbs/{_e(thumb)}" alt="image {index}" loading="eager">' if thumb.endswith(".jpg")
           else f'<div class="missing">no thumbnail: {_e(thumb or "not made")}</div>')
    text = info.get(index, "")
    return (f'<div class="card">{img}<div>#{index} <code>{_e(t["path"][row].as_py())}</code></div>'
            f'<div>{_e(text[:160])}{"..." if len(text) > 160 else ""}</div>'
            f'<div class="kw">{_e(", ".join(kws[:12]))}</div>'
            f'<div>{_e(", ".join(f"{stats.class_names[c]} {w:.2f}" for c, w in labels))}</div></div>')


def page(stats: Stats, texts: dict[int, str], thumbs: dict[int, str], plots: list[str], title: str,
         seed: int) -> str:
    """The HTML page; ``texts``: index -> title/description excerpt, ``thumbs``: index -> file
    name under thumbs/ (or why none)."""
    kpi = stats.keywords_per_image
    noisy = [r for r in stats.rows if r.count]
    mean_noise = sum(r.noise * r.count for r in noisy) / max(1, sum(r.count for r in noisy))
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>",
           f"<style>{CSS}</style></head><body>",
           f"<h1>{_e(title)}</h1>",
           "<h2 id='overview'>Overview</h2><table>",
           f"<tr><th>images</th><td>{stats.images}</td></tr>",
           f"<tr><th>classes</th><td>{stats.classes}</td></tr>",
           f"<tr><th>vocabulary</th><td>{stats.vocabulary} keywords</td></tr>",
           f"<tr><th>keywords per image</th><td>mean {kpi.mean() if len(kpi) else 0:.2f}, "
           f"none for {int((kpi == 0).sum())} images</td></tr>",
           f"<tr><th>estimated noise</th><td>{mean_noise:.1%} of images have another class as top label</td></tr>",
           "<tr><th>bad input</th><td>" + (_e(", ".join(f"{k}: {v}" for k, v in stats.problems.items())) or "none")
           + "</td></tr></table>",
           f"<p>Thumbnails are a seeded sample (seed {seed}). <a href='classes.csv'>Per-class table (CSV)</a></p>",
           "<div class='plots'>" + "".join(f"<img src='plots/{_e(p)}' alt='{_e(p)}'>" for p in plots) + "</div>",
           "<h2 id='classes'>Per class</h2>",
           "<p><input id='filter' type='search' placeholder='filter by class name or wnid'> "
           "<span id='shown'></span> classes shown</p>"]
    for r in stats.rows:
        points = ", ".join(f"{_e(stats.class_names[c])} ({n})" for c, n in r.points_to) or "none"
        keywords = ", ".join(f"{_e(stats.keyword_names[k])} ({n})" for k, n in r.top_keywords) or "none"
        out += [f"<section class='cls' data-name='{_e(r.name)}' data-wnid='{_e(r.wnid)}' id='c{r.class_id}'>",
                f"<h3>{r.class_id}: {_e(r.name)} <small>{_e(r.wnid)}</small></h3>",
                f"<p>{r.count} images; <span class='noise'>estimated noise {r.noise:.1%}</span>; "
                f"suspect ones point to: {points}<br>top keywords: {keywords}</p><div class='grid'>",
                "<div class='side clean'><b>clean (top label: own class)</b><div class='grid'>"
                + "".join(_card(stats, i, texts, thumbs) for i in r.clean) + "</div></div>",
                "<div class='side suspect'><b>suspect (top label: another class)</b><div class='grid'>"
                + "".join(_card(stats, i, texts, thumbs) for i in r.suspect) + "</div></div></div></section>"]
    out.append("<h2 id='keywords'>Per keyword</h2>")
    if stats.keyword_samples:
        out.append("<p>images per keyword: <a href='#overview'>keyword frequency plot</a>; samples for "
                   "<select id='kw'>" + "".join(
                       f"<option value='{k}'>{_e(stats.keyword_names[k])} ({int(stats.keyword_df[k])} images)</option>"
                       for k in stats.keyword_samples) + "</select></p>")
        for k, rows in stats.keyword_samples.items():
            out.append(f"<div class='kwgrid grid' data-kw='{k}'>"
                       + "".join(_card(stats, i, texts, thumbs) for i in rows) + "</div>")
    else:
        out.append("<p>No keywords.</p>")
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out) + "\n"


def summary_json(stats: Stats, thumbs: dict[int, str]) -> str:
    return json.dumps({"images": stats.images, "classes": stats.classes, "vocabulary": stats.vocabulary,
                       "thumbnails": sum(v.endswith(".jpg") for v in thumbs.values()),
                       "thumbnails_missing": sum(not v.endswith(".jpg") for v in thumbs.values()),
                       "noise": {r.wnid: round(r.noise, 6) for r in stats.rows}}, indent=1)
