"""The notebook view of an analysis (``AnalysisResult._repr_html_``): the model, the counts and
the first layers, as one compact HTML table. Installed into ``estimate.results`` when this module
is imported (``entropyflow.report`` imports it), since ``estimate`` renders nothing."""

from __future__ import annotations

from html import escape

from ..estimate import results
from ..estimate.results import AnalysisResult


def _num(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def summary_html(result: AnalysisResult, rows: int = 12) -> str:
    """A compact notebook view: the model, the counts and the first layers."""
    m, c = result.model, result.counts
    head = (
        f"<b>entropyflow</b> <code>{escape(m.spec)}</code> · {escape(result.estimator)} estimator · "
        f"{c.layers} layers ({c.conv} conv, {c.dense} dense) · {c.not_exact} approximate totals · "
        f"{c.skipped} skipped"
    )
    body = "".join(
        f"<tr><td>{layer.index}</td><td style='text-align:left'><code>{escape(layer.name)}</code></td>"
        f"<td>{escape(layer.kind)}</td><td>{layer.filters}</td><td>{_num(layer.summary.mean)}</td>"
        f"<td>{_num(layer.summary.median)}</td><td>{_num(layer.total, 1)}</td>"
        f"<td>{'yes' if layer.exact else '—' if layer.exact is None else 'no'}</td></tr>"
        for layer in result.layers[:rows]
    )
    more = ""
    if len(result.layers) > rows:
        more = f"<div>… {len(result.layers) - rows} more layers: <code>.to_pandas()</code></div>"
    return (
        f"<div>{head}<table><thead><tr><th>#</th><th>layer</th><th>kind</th><th>filters</th><th>mean</th>"
        f"<th>median</th><th>total</th><th>exact</th></tr></thead><tbody>{body}</tbody></table>{more}</div>"
    )


results.NOTEBOOK_VIEW[:] = [summary_html]

__all__ = ["summary_html"]
