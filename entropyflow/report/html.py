"""``report.html``: one self-contained page (no network, no scripts) with a table of contents, the
figures embedded and scaled to the page width, the layer table (with ``--compare random``: the
seeds' level, z-scores and percentiles beside the model's values; with another model: its table
too), provenance, skipped modules with reasons, and the layers that are not exact."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape as _html_escape

from ..estimate.reference import SeedReference
from ..estimate.results import AnalysisResult
from ..text import number_ranges, printable
from .numbers import fmt


def escape(text: object) -> str:
    """HTML-escaped, with control characters written out (input-derived text is never raw)."""
    return _html_escape(printable(text))


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666}figure{margin:12px 0}figure img,figure svg{max-width:100%;height:auto;display:block}
nav.toc{font-size:13px;margin:10px 0 0}nav.toc a{margin-right:14px;color:#3182bd}
.tablewrap{overflow-x:auto;max-width:100%}.out{color:#b2182b;font-weight:600}
figcaption{color:#555;font-size:13px}table{border-collapse:collapse;font-size:13px}
th,td{padding:3px 7px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f3f3f3;position:sticky;top:0}td.l,th.l{text-align:left}
.no{color:#b35806}.yes{color:#1a9850}.na{color:#888}.inf{color:#cb181d}
.bar{display:inline-block;height:9px;background:#6baed6;vertical-align:middle}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0}dt{color:#666}dd{margin:0}
.warn{background:#fff5eb;border-left:3px solid #e6550d;padding:6px 10px;margin:6px 0}
code{font-size:12.5px}
"""


def render_html(
    result: AnalysisResult,
    figures: Mapping[str, tuple[str, bytes]] | None = None,
    *,
    references: Sequence[AnalysisResult] = (),
    reference: SeedReference | None = None,
) -> bytes:
    """The page as UTF-8 bytes. ``figures``: caption → (format, bytes); PNG and SVG are embedded,
    PDF is linked by caption only (browsers cannot inline it portably). ``references``: the
    analyses compared with (their table is shown for one other model); ``reference``: the model
    against random-init seeds."""
    m = result.model
    sections = [("figures", "Figures"), ("layers", "Layers")]
    other = references[0] if len(references) == 1 and reference is None else None
    if other is not None:
        sections.append(("reference", "Reference"))
    sections += [("exactness", "Exactness"), ("skipped", "Skipped"), ("provenance", "Provenance")]
    toc = "".join(f"<a href='#{key}'>{text}</a>" for key, text in sections)
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>entropyflow: {escape(m.spec)}</title>",
        f"<meta name='viewport' content='width=device-width'><style>{CSS}</style></head><body><main>",
        f"<h1 id='title'>entropyflow: <code>{escape(m.spec)}</code></h1><div class='sub'>{escape(m.description)}</div>",
        f"<nav class='toc'>{toc}</nav>",
    ]
    parts += [f"<div class='warn'>warning: {escape(w)}</div>" for w in result.warnings]
    parts.append("<h2 id='figures'>Entropy change per layer</h2>")
    for caption, (fmt_, data) in (figures or {}).items():
        parts.append(_figure(caption, fmt_, data))
    parts.append(_layer_table(result, reference, "layers", "Layers"))
    if other is not None:
        parts.append(_layer_table(other, None, "reference", f"Reference: {other.model.spec}"))
    parts.append(_not_exact(result))
    parts.append(_skipped(result))
    parts.append(_provenance(result))
    parts.append("</main></body></html>\n")
    return "".join(parts).encode("utf-8", "backslashreplace")  # lone surrogates (non-UTF-8 file names) as text


def _figure(caption: str, fmt_: str, data: bytes) -> str:
    if fmt_ == "svg":
        body = data.decode("utf-8")
        body = body[body.index("<svg") :]
    elif fmt_ == "png":
        body = f"<img alt='{escape(caption)}' src='data:image/png;base64,{base64.b64encode(data).decode('ascii')}'>"
    else:
        return f"<p>{escape(caption)}: written as {fmt_.upper()} next to this page.</p>"
    return f"<figure>{body}<figcaption>{escape(caption)}</figcaption></figure>"


def _layer_table(result: AnalysisResult, reference: SeedReference | None, key: str, heading: str) -> str:
    means = [layer.summary.mean for layer in result.layers if layer.summary.mean is not None]
    lo, hi = (min(means), max(means)) if means else (0.0, 1.0)
    span = (hi - lo) or 1.0
    seed_head = seed_note = ""
    # with the seed columns the quartiles give way (they are in layers.csv), so the table fits 1280 px
    quartiles_head = "" if reference is not None else "<th>Q1</th><th>Q3</th>"
    if reference is not None:
        n = reference.n
        seed_head = (
            "<th>seeds' median<br>mean ± sd</th><th>z</th><th>percentile</th><th>outside</th>"
            "<th>init level<br>(median)</th>"
        )
        seed_note = (
            f" Against {n} random-init seed{'s' if n != 1 else ''} ({number_ranges(reference.seeds)}) of the "
            "same architecture, on the layer median: z = (model − seeds' mean)/sd; percentile among the seeds; "
            f"outside = Holm-corrected prediction test p < {reference.alpha:g}; init level = the median of log|w| the "
            f"recognised init scheme predicts ({escape(reference.init_scheme or 'none recognised')})."
            + (" One seed cannot separate signal from noise: no z-scores." if n == 1 else "")
        )
    rows = [
        f"<h2 id='{key}'>{escape(heading)}</h2><p class='sub'>values in nats; mean, median and quartiles are per "
        "output position over the layer's filters (finite values); the bar shows the mean relative to the other layers."
        f"{seed_note}</p><div class='tablewrap'>",
        "<table><thead><tr><th>#</th><th class='l'>layer</th><th class='l'>kind</th><th>filters</th>"
        f"<th class='l'>mean profile</th><th>mean</th><th>median</th>{quartiles_head}<th>total</th>"
        f"<th class='l'>exact</th><th>−∞</th>{seed_head}</tr></thead><tbody>",
    ]
    for layer in result.layers:
        s = layer.summary
        bar = "" if s.mean is None else f"<span class='bar' style='width:{4 + 96 * (s.mean - lo) / span:.0f}px'></span>"
        exact = (
            "<span class='na'>—</span>"
            if layer.exact is None
            else "<span class='yes'>yes</span>"
            if layer.exact
            else "<span class='no'>no</span>"
        )
        name = escape(layer.name) + ("" if layer.traced else " <span class='na'>(untraced)</span>")
        quartiles = "" if reference is not None else f"<td>{fmt(s.q1)}</td><td>{fmt(s.q3)}</td>"
        inf = f"<span class='inf'>{s.n_neginf}</span>" if s.n_neginf else ""
        rows.append(
            f"<tr><td>{layer.index}</td><td class='l'><code>{name}</code></td><td class='l'>{escape(layer.kind)}</td>"
            f"<td>{layer.filters}</td><td class='l'>{bar}</td><td>{fmt(s.mean)}</td><td>{fmt(s.median)}</td>"
            f"{quartiles}<td>{fmt(layer.total, 1)}</td><td "
            f"class='l'>{exact}</td><td>{inf}</td>{_seed_cells(reference, layer.name)}</tr>"
        )
    rows.append("</tbody></table></div>")
    return "".join(rows)


def _seed_cells(reference: SeedReference | None, name: str) -> str:
    if reference is None:
        return ""
    item = reference.layer(name)
    st = item.stat("median")
    init = fmt(item.init.median) if item.init is not None else "<span class='na'>—</span>"
    if st is None:
        return f"<td class='na'>—</td><td></td><td></td><td></td><td>{init}</td>"
    spread = f"{fmt(st.mean)} ± {fmt(st.sd)}" if st.sd is not None else fmt(st.mean)
    z = fmt(st.z, 2) if st.z is not None else "—"
    flag = "<span class='out'>yes</span>" if st.outside else ("no" if st.outside is False else "—")
    return f"<td>{spread}</td><td>{z}</td><td>{st.percentile:.0f}</td><td>{flag}</td><td>{init}</td>"


def _not_exact(result: AnalysisResult) -> str:
    groups: dict[str, list[str]] = {}
    for layer in result.layers:
        if layer.exact is not True and layer.reason:
            groups.setdefault(layer.reason, []).append(f"{layer.index} {layer.name}")
    if not groups:
        return "<h2 id='exactness'>Exactness</h2><p>Every total is the exact completed determinant.</p>"
    items = "".join(
        f"<li>{escape(reason)}<br><span class='sub'>{escape(', '.join(names))}</span></li>"
        for reason, names in groups.items()
    )
    return f"<h2 id='exactness'>Layers whose total is not exact or unavailable</h2><ul>{items}</ul>"


def _skipped(result: AnalysisResult) -> str:
    if not result.skipped:
        return "<h2 id='skipped'>Skipped modules</h2><p>None: every parameterised module was analysed.</p>"
    rows = "".join(
        f"<tr><td class='l'><code>{escape(s.name)}</code></td><td class='l'>{escape(s.module_type)}</td>"
        f"<td>{s.parameters:,}</td><td class='l'>{escape(s.reason)}</td></tr>"
        for s in result.skipped
    )
    return (
        "<h2 id='skipped'>Skipped modules</h2><table><thead><tr><th class='l'>module</th><th class='l'>type</th>"
        f"<th>parameters</th><th class='l'>reason</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _provenance(result: AnalysisResult) -> str:
    m = result.model
    items = [
        ("model spec", m.spec),
        ("weights", m.weights),
        ("format", m.format),
        ("architecture", m.arch or "—"),
        ("files", ", ".join(m.files) or "—"),
        ("sha256", m.sha256 or "—"),
        ("input size", "x".join(map(str, m.input_size)) if m.input_size else "—"),
        ("geometry from", m.walk),
        ("estimator", result.estimator),
        ("channel rule", result.channel_rule),
        ("device", result.device),
    ]
    items += [(name, version) for name, version in result.versions]
    dl = "".join(f"<dt>{escape(k)}</dt><dd><code>{escape(str(v))}</code></dd>" for k, v in items)
    notes = "".join(f"<li>{escape(n)}</li>" for n in result.notes)
    return f"<h2 id='provenance'>Provenance</h2><dl>{dl}</dl>" + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
