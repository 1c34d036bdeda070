"""Rendering: matplotlib PNGs (Agg, no pyplot state) and one self-contained HTML page.

The page has inline CSS, PNGs as ``data:`` URIs, no script and no external
asset, and a Content-Security-Policy that forbids loading anything else, so it
opens offline and a prompt that slipped through unescaped still could not run.
Every piece of run text (prompts, ids, operator names, reasons) is escaped:
prompts are model output.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from promptopt.exceptions import ConfigError
from promptopt.report._data import CandidatePoint, LineageNode, ReportData, SeriesPoint, prompt_text, word_diff

# matplotlib's tab10, so badges in the HTML match the scatter plot without importing matplotlib.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
MAX_DIFFERING_IDS = 60
_e = html.escape


def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on an Agg canvas (never pyplot, so the caller's backend is untouched)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("the report's plots need matplotlib, which is not installed; "
                          "run `pip install 'promptopt[plot]'`") from None
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def operator_colours(data: ReportData) -> dict[str, str]:
    """One colour per operator, in order of first appearance (shared by plot and badges)."""
    names = [p.operator for p in data.points] + [n.operator for n in data.lineage] + list(data.skips)
    unique = list(dict.fromkeys(names))
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(unique)}


def plot_progress(series: Sequence[SeriesPoint]) -> str:
    """Best dev score as a step line over target calls and over tokens; a PNG data URI."""
    fig = _figure(10, 3.4)
    axes = fig.subplots(1, 2, sharey=True)
    ys = [p.best_dev for p in series]
    for ax, xs, label in ((axes[0], [p.target_calls for p in series], "target calls spent"),
                          (axes[1], [p.tokens for p in series], "tokens spent (target + optimizer)")):
        ax.step(xs, ys, where="post", color=PALETTE[0], linewidth=2)
        ax.plot(xs[:-1] if len(xs) > 1 else xs, ys[:-1] if len(ys) > 1 else ys, "o", color=PALETTE[0], markersize=4)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        ax.margins(x=0.03, y=0.15)
    axes[0].set_ylabel("best dev score so far")
    return _png(fig)


def plot_candidates(points: Sequence[CandidatePoint], colours: dict[str, str], seed_id: str | None,
                    best_id: str | None) -> str:
    """Each candidate's full-dev score at the spend when it was scored, coloured by operator."""
    fig = _figure(10, 3.8)
    ax = fig.subplots()
    for op in dict.fromkeys(p.operator for p in points):
        mine = [p for p in points if p.operator == op]
        ax.scatter([p.target_calls for p in mine], [p.mean for p in mine], s=36, alpha=0.75,
                   color=colours.get(op, PALETTE[-1]), label=op, edgecolors="white", linewidths=0.5)
    for pid, marker, label in ((seed_id, "s", "seed prompt"), (best_id, "*", "best prompt")):
        hit = [p for p in points if p.prompt_id == pid]
        if hit:
            ax.scatter([hit[0].target_calls], [hit[0].mean], s=260 if marker == "*" else 110, marker=marker,
                       facecolors="none", edgecolors="black", linewidths=1.4, label=label)
    ax.set_xlabel("target calls spent when scored on the full dev split")
    ax.set_ylabel("dev score")
    ax.grid(alpha=0.3)
    ax.margins(x=0.05, y=0.15)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
    return _png(fig)


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;margin:0;background:#f6f7f9}
main{max-width:1080px;margin:0 auto;padding:24px 28px 48px;background:#fff;min-height:100vh}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:32px 0 8px;border-bottom:1px solid #e3e5e8;padding-bottom:4px}
.sub{color:#666;margin:0 0 16px}code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f7f9;border:1px solid #e3e5e8;border-radius:6px;
padding:10px 12px;margin:6px 0}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 12px 3px 0;text-align:left;vertical-align:top}
th{font-weight:600;color:#444}table.num td:not(:first-child),table.num th:not(:first-child){text-align:right}
table.facts th{width:210px}tbody tr:nth-child(even){background:#fafbfc}
img{max-width:100%;height:auto;display:block;margin:8px 0}
.banner{background:#fff4e5;border:1px solid #f0b45b;color:#7a4a00;border-radius:6px;padding:8px 12px;margin:12px 0}
.muted{color:#777}.op{display:inline-block;border-radius:10px;padding:0 8px;color:#fff;font-size:12px;
font-weight:600;vertical-align:1px}
.badge{display:inline-block;border:1px solid #999;border-radius:10px;padding:0 7px;font-size:12px;margin-left:4px}
ol.lineage{list-style:none;padding:0;margin:8px 0}ol.lineage li{margin:0}
.node{border:1px solid #d7dbe0;border-radius:8px;padding:6px 12px;background:#fcfcfd}
.node.best{border:2px solid #1d1d1f}.edge{margin:2px 0 2px 22px;padding:2px 0 2px 14px;border-left:2px solid #c8ccd2;
color:#555;font-size:13px}
details summary{cursor:pointer;color:#333}
del{background:#ffe3e3;color:#8a1010}del+ins{margin-left:3px}ins{background:#dcf5dc;color:#0b5d1e;text-decoration:none}
.wins b{font-size:18px}
"""


def _op(name: str, colours: dict[str, str]) -> str:
    return f'<span class="op" style="background:{colours.get(name, "#555")}">{_e(name)}</span>'


def _facts(data: ReportData) -> str:
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in data.header)
    banner = ("" if data.complete else '<div class="banner"><b>Incomplete run.</b> There is no result.json: '
              "the run crashed or is still going. This report shows what the event log holds so far.</div>")
    return f'{banner}<section id="summary"><table class="facts">{rows}</table></section>'


def _progress(data: ReportData) -> str:
    body = (f'<img alt="best dev score vs spend" src="{plot_progress(data.series)}">' if data.series
            else '<p class="muted">No candidate has been scored on the full dev split yet.</p>')
    return f'<section id="progress"><h2>Best dev score vs spend</h2>{body}</section>'


def _candidates(data: ReportData, colours: dict[str, str]) -> str:
    if data.points:
        body = (f'<img alt="every candidate\'s dev score" '
                f'src="{plot_candidates(data.points, colours, data.seed_id, data.best_id)}">'
                f'<p class="muted">{len(data.points)} candidates scored on the full dev split; '
                "candidates scored together share an x position.</p>")
    else:
        body = '<p class="muted">No candidate has been scored on the full dev split yet.</p>'
    return f'<section id="candidates"><h2>Every candidate\'s dev score</h2>{body}</section>'


def _preview(text: str | None, limit: int = 140) -> str:
    if text is None:
        return "(not in the event log)"
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _node(node: LineageNode, previous: str | None, best_id: str | None, colours: dict[str, str]) -> str:
    edge = ""
    if node.parents:
        source = ("" if list(node.parents) == [previous] else
                  " from " + ", ".join(f"<code>{_e(p)}</code>" for p in node.parents))
        edge = f'<div class="edge">↓ {_op(node.operator, colours)}{source}</div>'
    text = prompt_text(node.prompt) if node.prompt is not None else None
    instruction = str(node.prompt.get("instruction", "")) if node.prompt is not None else None
    dev = "dev –" if node.dev is None else f"dev {node.dev:.3f}"
    tags = ' <span class="badge">best</span>' if node.prompt_id == best_id else ""
    own = f" {_op(node.operator, colours)}" if not node.parents else ""
    full = f"<pre>{_e(text)}</pre>" if text is not None else ""
    return (f'<li>{edge}<div class="node{" best" if node.prompt_id == best_id else ""}">'
            f"<code>{_e(node.prompt_id)}</code>{own}{tags} <span class=\"muted\">{dev}</span>"
            f"<details><summary>{_e(_preview(instruction))}</summary>{full}</details></div></li>")


def _lineage(data: ReportData, colours: dict[str, str]) -> str:
    if not data.lineage:
        return ('<section id="lineage"><h2>Lineage of the best prompt</h2>'
                '<p class="muted">No best prompt yet.</p></section>')
    items, previous = [], None
    for node in data.lineage:
        items.append(_node(node, previous, data.best_id, colours))
        previous = node.prompt_id
    steps = len(data.lineage) - 1
    if all(len(n.parents) <= 1 for n in data.lineage):
        shape = f'{steps} step{"s" if steps != 1 else ""} from the seed'
    else:
        shape = f"{steps} ancestors (some prompts have several parents)"
    return (f'<section id="lineage"><h2>Lineage of the best prompt</h2><p class="muted">{shape}; each arrow '
            "names the operator that made the prompt below it. Click a prompt to see all of it.</p>"
            f'<ol class="lineage">{"".join(items)}</ol></section>')


def _diff(data: ReportData) -> str:
    if data.seed_text is None or data.best_text is None:
        body = '<p class="muted">The seed or the best prompt is not in the log yet.</p>'
    elif data.seed_text == data.best_text:
        body = (f'<p class="muted">No candidate beat the seed on dev; the best prompt is the seed.</p>'
                f"<pre>{_e(data.seed_text)}</pre>")
    else:
        body = (f'<p class="muted"><del>removed</del> and <ins>added</ins> words, seed → best.</p>'
                f'<pre class="diff">{word_diff(data.seed_text, data.best_text)}</pre>')
    return f'<section id="diff"><h2>Seed vs best prompt</h2>{body}</section>'


def _differing_table(differing: Sequence[tuple[str, float, float]]) -> str:
    """Ids of the examples where best and seed differ, as two rows (best wins / best loses)."""
    binary = all(x in (0.0, 1.0) for _, s, b in differing for x in (s, b))
    rows = []
    for label, picked in (("best wins", [d for d in differing if d[2] > d[1]]),
                          ("best loses", [d for d in differing if d[2] < d[1]])):
        shown = picked[:MAX_DIFFERING_IDS]
        cells = ", ".join(f"<code>{_e(k)}</code>" + ("" if binary else f" ({s:.2f}→{b:.2f})") for k, s, b in shown)
        more = f" … and {len(picked) - len(shown)} more" if len(picked) > len(shown) else ""
        rows.append(f"<tr><th>{label} ({len(picked)})</th><td>{cells or '–'}{more}</td></tr>")
    return f'<table class="facts">{"".join(rows)}</table>'


def _test(data: ReportData) -> str:
    w = data.wins
    if w is None:
        body = '<p class="muted">No test scores: the final test evaluation has not run.</p>'
    else:
        body = (f'<p class="wins">Of {w.n} test examples, the best prompt <b>wins {w.wins}</b>, '
                f"<b>loses {w.losses}</b> and ties {w.ties} against the seed.</p>")
        if w.differing:
            body += _differing_table(w.differing)
    return f'<section id="test"><h2>Test: best vs seed, per example</h2>{body}</section>'


def _spend(data: ReportData) -> str:
    if data.spend:
        usd = any(r.usd for r in data.spend)
        rows = "".join(
            f"<tr><td>{_e(r.role)}</td><td>{r.search_calls:,}</td><td>{r.search_paid_calls:,}</td>"
            f"<td>{r.search_tokens:,}</td><td>{r.total_calls:,}</td><td>{r.total_paid_calls:,}</td>"
            f"<td>{r.total_tokens:,}</td>" + (f"<td>{r.usd:.4f}</td>" if usd else "") + "</tr>" for r in data.spend)
        body = ('<table class="num"><thead><tr><th>role</th><th>search calls</th><th>search paid</th>'
                "<th>search tokens</th><th>total calls</th><th>total paid</th><th>total tokens</th>"
                + ("<th>USD</th>" if usd else "")
                + f'</tr></thead><tbody>{rows}</tbody></table><p class="muted">Total = search + the final test '
                "evaluation (outside the budget). Paid calls are those not replayed from the cache.</p>")
    elif data.snapshot is not None:
        s = data.snapshot
        body = (f"<p>So far (from the last logged event): {s.target_calls:,} target calls, "
                f"{s.optimizer_calls:,} optimizer calls, {s.tokens:,} tokens, {s.elapsed:.1f} s.</p>")
    else:
        body = '<p class="muted">Nothing logged yet.</p>'
    return f'<section id="spend"><h2>Spend</h2>{body}</section>'


def _skips(data: ReportData, colours: dict[str, str]) -> str:
    if not data.skips:
        body = '<p class="muted">No optimizer reply was skipped.</p>'
    else:
        rows = "".join(f"<tr><td>{_op(k, colours)}</td><td>{v}</td></tr>" for k, v in data.skips.items())
        body = (f'<table class="num"><thead><tr><th>operator</th><th>skipped</th></tr></thead><tbody>{rows}'
                f'</tbody></table><p class="muted">Optimizer replies that could not be used as a prompt '
                f"(each is in events.jsonl with its reason).</p>")
    return f'<section id="skips"><h2>Skipped proposals</h2>{body}</section>'


def render_html(data: ReportData) -> str:
    """The whole report page as one self-contained HTML string."""
    colours = operator_colours(data)
    status = "" if data.complete else " (incomplete)"
    sections = [_facts(data), _progress(data), _candidates(data, colours), _lineage(data, colours), _diff(data),
                _test(data), _spend(data), _skips(data, colours)]
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>promptopt report · {_e(data.run_id)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>promptopt report{status}</h1><p class=\"sub\"><code>{_e(data.run_id)}</code></p>"
            + "".join(sections)
            + '<p class="muted" style="margin-top:36px">Made by <code>promptopt report</code> from config.json, '
            "events.jsonl and result.json.</p></main></body></html>\n")
