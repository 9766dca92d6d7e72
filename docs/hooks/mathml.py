r"""MkDocs hook: the TeX of every page, docstrings included, rendered as MathML when the site is built.

`pymdownx.arithmatex` (generic mode) marks `\( ... \)` and `\[ ... \]` in the Markdown; this hook converts
what it marked with math-core, so a page shows its equations with no script, font or network access, and an
equation math-core cannot read fails the build.
"""

from __future__ import annotations

import html
import re

from math_core import LatexError, LatexToMathML

CONVERTER = LatexToMathML()
MARKED = re.compile(r'(<(?:span|div) class="arithmatex">)\\([(\[])(.*?)\\[)\]](</(?:span|div)>)', re.S)


def on_page_content(content: str, page, **kwargs) -> str:
    """Replace the TeX that arithmatex marked on `page` by MathML."""

    def mathml(match: re.Match) -> str:
        opening, delimiter, tex, closing = match.groups()
        try:
            rendered = CONVERTER.convert_with_local_state(html.unescape(tex), displaystyle=delimiter == "[")
        except LatexError as error:
            raise ValueError(f"{page.file.src_uri}: cannot render the TeX {tex!r}: {error}") from error
        return f"{opening}{rendered}{closing}"

    return MARKED.sub(mathml, content)
