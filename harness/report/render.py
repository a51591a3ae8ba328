"""Every output format as a pure function of a run's ``Results``, and writing them all."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.atomic import write_or_fail
from harness.errors import UserError
from harness.results.schema import Results
from harness.results.store import dumps

FORMATS = ("html", "junit", "md")
FILE_NAMES = {"html": "report.html", "junit": "junit.xml", "md": "summary.md"}


def renderer(fmt: str) -> Callable[[Results], str]:
    if fmt == "html":
        from harness.report.html import render_html

        return render_html
    if fmt == "junit":
        from harness.report.junit import render_junit

        return render_junit
    if fmt == "md":
        from harness.report.markdown import render_markdown

        return lambda results: render_markdown(results.document())
    raise ValueError(f"unknown report format {fmt!r}; formats: {', '.join(FORMATS)}")


RENDER_ERROR = "cannot render {fmt}: results.json has an unexpected structure ({reason})"


def render(results: Results, fmt: str) -> str:
    """``results`` rendered as ``fmt`` (html | junit | md).

    ``load_results`` checks the shape renderers rely on; free-form parts (audit
    sections, records) that still hold something unreadable are a UserError too, so a
    damaged file never ends in a traceback.
    """
    fn = renderer(fmt)
    try:
        return fn(results)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        raise UserError(RENDER_ERROR.format(fmt=fmt, reason=reason)) from None


def write_output(path: Path, text: str) -> Path:
    """Write one rendered output atomically; a failure is a located UserError."""
    write_or_fail({path: text})
    return path


def render_all(results: Results) -> dict[str, str]:
    """Every format, rendered in memory: ``{format: text}``.

    A run that used the response cache keeps its charts beside it (``charts/``) and
    reuses them: the same results draw the same charts, so a re-run draws none.
    """
    from harness.report.charts import memo

    cache = results.provenance.cache if results.provenance else None
    path = cache.path if cache is not None and cache.enabled else None
    with memo(Path(path).parent / "charts" if path is not None else None):
        return {fmt: render(results, fmt) for fmt in FORMATS}


def write_reports(
    results: Results, out_dir: Path, rendered: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Write report.html, junit.xml and summary.md, each atomically. Everything is
    rendered before the first write, so a rendering error leaves the folder as it was."""
    rendered = render_all(results) if rendered is None else rendered
    paths = {fmt: out_dir / FILE_NAMES[fmt] for fmt in rendered}
    write_or_fail({paths[fmt]: text for fmt, text in rendered.items()})
    return paths


def publish(results: Results, out_dir: Path, signer: Any = None) -> dict[str, Path]:
    """Render every format, then write results.json, the renderings and their digests
    (digests.json; with a ``signer``, attestation.json: harness.results.attest) as one
    set: a failure (rendering, full disk, permissions) leaves the folder's earlier run
    whole, never a new results.json beside an old report. Returns the paths by format
    (and ``digests``, ``attestation``)."""
    from harness.results.attest import seal

    rendered = render_all(results)
    paths = {"results": out_dir / "results.json"}
    paths.update({fmt: out_dir / FILE_NAMES[fmt] for fmt in rendered})
    texts = {"results": dumps(results), **rendered}
    for key, (name, text) in seal(
        {paths[k].name: texts[k] for k in paths}, results, signer
    ).items():
        paths[key], texts[key] = out_dir / name, text
    write_or_fail({paths[key]: texts[key] for key in paths})
    return paths
