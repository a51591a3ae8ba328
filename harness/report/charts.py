"""Small inline SVG charts drawn with matplotlib (Agg canvas, SVG output, no pyplot).

Text stays text (``svg.fonttype: none``), so a chart costs a few kilobytes and reads
crisply when printed; ids are salted with a constant and the date is dropped, so the
same results give byte-identical SVG. Labels come from results.json and may be
untrusted: they are ``clean``-ed, mathtext parsing is off, and matplotlib escapes them
as XML text. Each function returns the ``<svg>`` element alone, ready to inline.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from markupsafe import Markup

from harness.report.safe_text import one_line

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PASS_C, BASE_C, NEW_C, BAD_C, GOOD_C = "#2563eb", "#9ca3af", "#2563eb", "#dc2626", "#16a34a"
_RC: Any = {  # typed loosely: matplotlib types rc keys as a Literal
    "svg.fonttype": "none",
    "svg.hashsalt": "harness-report",
    "font.size": 8,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial"],  # short: repeated in every <text>
    "text.parse_math": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
}
_LABEL_LIMIT = 40
_MEMO: list[Path] = []  # the folder of the innermost ``memo`` block, if any
F = TypeVar("F", bound=Callable[..., str])
# what no chart of ours holds and a tampered memo file could (the page's CSP blocks
# scripts as well): scripts, event handlers, javascript: and links leaving the chart
_ACTIVE = re.compile(r"<script|<foreignobject|\bon\w+\s*=|javascript:|href=\"(?!#)", re.I)


@contextlib.contextmanager
def memo(folder: Path | None) -> Iterator[None]:
    """Keep the charts drawn inside this block in ``folder`` and reuse them.

    A chart is a pure function of its arguments, this module's code and matplotlib's
    version, so the same inputs give the same SVG: a re-run whose results did not
    change draws nothing and never imports matplotlib. ``None``: no memo.
    """
    if folder is None:
        yield
        return
    _MEMO.append(folder)
    try:
        yield
    finally:
        _MEMO.pop()


@functools.cache
def _code_version() -> str:
    from importlib.metadata import version

    code = Path(__file__).read_bytes()
    return hashlib.sha256(code + version("matplotlib").encode()).hexdigest()


def _memoized(draw: F) -> F:
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        if not _MEMO:
            return draw(*args, **kwargs)
        call = json.dumps([draw.__name__, args, kwargs], default=repr, sort_keys=True)
        key = hashlib.sha256(f"{_code_version()}\n{call}".encode()).hexdigest()
        path = _MEMO[-1] / f"{key}.svg"
        with contextlib.suppress(OSError, UnicodeDecodeError):
            kept = path.read_text(encoding="utf-8")
            if kept.startswith("<svg") and not _ACTIVE.search(kept):
                return Markup(kept)
        svg = draw(*args, **kwargs)
        with contextlib.suppress(OSError):  # a memo that cannot be written is no memo
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
            tmp.write_text(svg, encoding="utf-8")
            os.replace(tmp, path)  # whole or absent: never a half-written chart
        return svg

    return wrapper  # type: ignore[return-value]


def _label(text: object) -> str:
    return one_line(text, _LABEL_LIMIT)


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _svg(fig: Figure) -> str:
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    FigureCanvasSVG(fig)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    # matplotlib's global `*{stroke-...}` rule would style the whole page once inlined,
    # and its element ids (figure_1, axes_1...) would repeat across charts.
    svg = re.sub(r"<defs>\s*<style[^>]*>.*?</style>\s*</defs>", "", svg, flags=re.S)
    svg = re.sub(r'<g id="[^"]*"', "<g", svg)
    # Markup: our own SVG, whose text matplotlib has XML-escaped, is the one piece of
    # markup the autoescaping templates insert as is.
    return Markup(re.sub(r"\s*\n\s*", "\n", svg).strip())


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=72)


@_memoized
def interval_chart(
    rows: Sequence[tuple[str, float | None, float | None, float | None]],
    *,
    title: str = "",
    xlabel: str = "",
    xlim: tuple[float, float] | None = None,
) -> str:
    """A forest plot: one row per (label, value, ci_low, ci_high), CI as a bar."""
    coloured = [(label, v, lo, hi, PASS_C) for label, v, lo, hi in rows]
    return _forest(coloured, title=title, xlabel=_label(xlabel), xlim=xlim, bar_alpha=0.35)


JUDGEMENT_C = {"better": GOOD_C, "worse": BAD_C}
"""The colour of a compared metric's judgement; anything else (n.s., same) is grey."""


@_memoized
def delta_chart(
    rows: Sequence[tuple[str, float | None, float | None, float | None, str]],
    *,
    title: str = "",
) -> str:
    """Deltas with CIs around a zero line; (label, delta, low, high, judgement).

    The judgement ('better', 'worse', anything else for not significant) is made by the
    caller, the one that also labels the table: the sign of a delta alone says nothing
    (a falling nll is an improvement).
    """
    coloured = [(label, d, lo, hi, JUDGEMENT_C.get(j, BASE_C)) for label, d, lo, hi, j in rows]
    return _forest(
        coloured,
        title=title,
        xlabel="new - baseline (95% paired bootstrap CI); green better, red worse",
        bar_alpha=0.45,
        zero_line=True,
    )


def _forest(
    rows: Sequence[tuple[str, float | None, float | None, float | None, str]],
    *,
    title: str,
    xlabel: str,
    bar_alpha: float,
    xlim: tuple[float, float] | None = None,
    zero_line: bool = False,
) -> str:
    """One row per (label, value, low, high, colour), top down; the CI as a bar."""
    import matplotlib as mpl

    rows = [r for r in rows if _finite(r[1])]
    if not rows:
        return ""
    with mpl.rc_context(_RC):
        fig = _figure(5.5, 0.28 * len(rows) + 0.7)
        ax = fig.add_subplot()
        ys = list(range(len(rows)))[::-1]
        if zero_line:
            ax.axvline(0, color="#111827", linewidth=0.8)
        for y, (_, v, lo, hi, colour) in zip(ys, rows, strict=True):
            if lo is not None and hi is not None and _finite(lo) and _finite(hi):
                ax.plot([lo, hi], [y, y], color=colour, linewidth=3, alpha=bar_alpha)
            ax.plot([v or 0.0], [y], "o", color=colour, markersize=4)
        ax.set_yticks(ys, [_label(r[0]) for r in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        if xlim:
            ax.set_xlim(*xlim)
        ax.set_xlabel(xlabel)
        ax.set_title(_label(title), loc="left")
        ax.grid(axis="x", linewidth=0.4, alpha=0.5)
        return _svg(fig)


@_memoized
def grouped_bars(
    groups: Sequence[str],
    series: Sequence[
        tuple[str, Sequence[float | None], Sequence[tuple[float | None, float | None]]]
    ],
    *,
    title: str = "",
    ylabel: str = "",
) -> str:
    """Bars per group for one or more series (name, values, [(low, high)] error bars)."""
    import matplotlib as mpl

    if not groups or not series:
        return ""
    colours = [BASE_C, NEW_C, "#f59e0b", "#7c3aed"]
    with mpl.rc_context(_RC):
        fig = _figure(max(3.0, min(7.0, 0.55 * len(groups) * len(series) + 1.5)), 2.2)
        ax = fig.add_subplot()
        width = 0.8 / len(series)
        for k, (name, values, cis) in enumerate(series):
            xs, hs, err_lo, err_hi = [], [], [], []
            for i, v in enumerate(values):
                if not _finite(v):
                    continue
                assert v is not None
                lo, hi = cis[i] if i < len(cis) else (None, None)
                xs.append(i - 0.4 + width * (k + 0.5))
                hs.append(v)
                err_lo.append(max(0.0, v - lo) if _finite(lo) else 0.0)  # type: ignore[operator]
                err_hi.append(max(0.0, hi - v) if _finite(hi) else 0.0)  # type: ignore[operator]
            ax.bar(
                xs,
                hs,
                width * 0.9,
                yerr=[err_lo, err_hi],
                color=colours[k % len(colours)],
                ecolor="#111827",
                capsize=2,
                error_kw={"linewidth": 0.8},
                label=_label(name),
            )
        ax.set_xticks(range(len(groups)), [_label(g) for g in groups])
        ax.set_ylabel(_label(ylabel))
        ax.set_title(_label(title), loc="left")
        if len(series) > 1:
            ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
        return _svg(fig)


@_memoized
def bar_chart(labels: Sequence[str], values: Sequence[float], *, title: str = "") -> str:
    """Horizontal bars, signed (negative red, positive blue); e.g. global top tokens."""
    import matplotlib as mpl
    from matplotlib.ticker import MaxNLocator

    if not labels:
        return ""
    with mpl.rc_context(_RC):
        fig = _figure(4.5, 0.22 * len(labels) + 0.7)
        ax = fig.add_subplot()
        ys = list(range(len(labels)))[::-1]
        ax.barh(ys, values, color=[BAD_C if v < 0 else PASS_C for v in values], height=0.7)
        ax.set_yticks(ys, [_label(x) for x in labels])
        ax.axvline(0, color="#111827", linewidth=0.6)
        ax.xaxis.set_major_locator(MaxNLocator(4))  # small values have long tick labels
        ax.set_title(_label(title), loc="left")
        return _svg(fig)


@_memoized
def line_chart(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
) -> str:
    """Lines (name, xs, ys); e.g. learning curves of train and validation loss."""
    import matplotlib as mpl

    series = [s for s in series if s[1]]
    if not series:
        return ""
    colours = [PASS_C, "#f59e0b", GOOD_C, "#7c3aed"]
    with mpl.rc_context(_RC):
        fig = _figure(5.5, 2.4)
        ax = fig.add_subplot()
        for k, (name, xs, ys) in enumerate(series):
            marker = "o" if len(xs) < 30 else None
            ax.plot(
                xs,
                ys,
                color=colours[k % len(colours)],
                marker=marker,
                markersize=3,
                linewidth=1.2,
                label=_label(name),
            )
        ax.set_xlabel(_label(xlabel))
        ax.set_ylabel(_label(ylabel))
        ax.set_title(_label(title), loc="left")
        ax.legend(frameon=False, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(linewidth=0.4, alpha=0.5)
        return _svg(fig)


WARN_C = "#f59e0b"
TREND_C = {"pass": PASS_C, "warn": WARN_C, "fail": BAD_C}
"""A trend point's colour by the verdict of its gate (no gate: the pass colour)."""


@_memoized
def trend_chart(
    points: Sequence[tuple[str, float | None, float | None, float | None, str]],
    *,
    lines: Sequence[tuple[str, float]] = (),
    title: str = "",
    ylabel: str = "",
) -> str:
    """One metric across runs: (run label, value, ci_low, ci_high, verdict) in run
    order, the CI as an error bar, the point coloured by its gate's verdict; ``lines``
    are (label, y) thresholds drawn dashed across."""
    import matplotlib as mpl

    if not any(_finite(p[1]) for p in points):
        return ""
    with mpl.rc_context(_RC):
        fig = _figure(max(4.0, min(9.0, 0.6 * len(points) + 2.0)), 2.6)
        ax = fig.add_subplot()
        xs = [i for i, p in enumerate(points) if _finite(p[1])]
        ys = [float(points[i][1]) for i in xs]  # type: ignore[arg-type]
        ax.plot(xs, ys, color=BASE_C, linewidth=1.0, zorder=1)
        for i, y in zip(xs, ys, strict=True):
            _, _, lo, hi, verdict = points[i]
            colour = TREND_C.get(verdict, PASS_C)
            if _finite(lo) and _finite(hi):
                low, high = float(lo), float(hi)  # type: ignore[arg-type]
                ax.plot([i, i], [low, high], color=colour, linewidth=3, alpha=0.35, zorder=2)
            marker = "X" if verdict == "fail" else "o"
            ax.plot([i], [y], marker, color=colour, markersize=6, zorder=3)
        for label, y in lines:
            if _finite(y):
                ax.axhline(y, color="#111827", linewidth=0.8, linestyle="--", zorder=0)
                ax.annotate(
                    _label(label),
                    (1.0, y),
                    xycoords=("axes fraction", "data"),
                    fontsize=7,
                    va="bottom",
                    ha="right",
                )
        ax.set_xticks(range(len(points)), [_label(p[0]) for p in points], rotation=30, ha="right")
        ax.set_xlim(-0.5, len(points) - 0.5)
        ax.set_ylabel(_label(ylabel))
        ax.set_title(_label(title), loc="left")
        ax.grid(axis="y", linewidth=0.4, alpha=0.5)
        return _svg(fig)
