"""The structure of an HTML page: one line per element, ``tag#id.class``, indented by
depth; text, attribute values other than id/class, and the inside of each inline SVG
chart (matplotlib's drawing) are left out, so the skeleton changes only when the
report's structure does."""

from __future__ import annotations

from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class _Skeleton(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.depth = 0
        self.in_svg = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.in_svg:
            self.in_svg += 1
            return
        a = dict(attrs)
        name = tag
        if a.get("id"):
            name += f"#{a['id']}"
        if a.get("class"):
            name += "".join(f".{c}" for c in (a["class"] or "").split())
        self.lines.append("  " * self.depth + name)
        if tag == "svg":
            self.in_svg = 1
        elif tag not in VOID:
            self.depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.in_svg:
            return
        self.handle_starttag(tag, attrs)
        if tag not in VOID and tag != "svg":
            self.depth -= 1

    def handle_endtag(self, tag: str) -> None:
        if self.in_svg:
            self.in_svg -= 1
            return
        if tag not in VOID:
            self.depth -= 1


def skeleton(html: str) -> str:
    parser = _Skeleton()
    parser.feed(html)
    parser.close()
    return "\n".join(parser.lines) + "\n"
