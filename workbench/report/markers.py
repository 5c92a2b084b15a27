"""Generated tables inside hand-written markdown: ``<!-- table:NAME -->`` ... ``<!-- /table -->``.

Only the text between a pair of markers is replaced; the prose around it stays as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_BLOCK = re.compile(r"^(<!-- table:([a-z0-9_.-]+) -->\n)(.*?)^(<!-- /table -->)", re.DOTALL | re.MULTILINE)
_OPEN = re.compile(r"^<!-- table:", re.MULTILINE)  # a marker is a line of its own; prose may quote one
_CLOSE = re.compile(r"^<!-- /table -->", re.MULTILINE)


class MarkerError(ValueError):
    pass


def table_names(text: str) -> list[str]:
    return [match.group(2) for match in _BLOCK.finditer(text)]


def fill_tables(text: str, render: Callable[[str], str]) -> str:
    """``text`` with every marked block replaced by ``render(name)`` (which ends with a newline)."""
    opened = len(_OPEN.findall(text))
    if opened != len(table_names(text)) or opened != len(_CLOSE.findall(text)):
        raise MarkerError("unbalanced table markers: every <!-- table:NAME --> needs its <!-- /table -->")

    def replace(match: re.Match) -> str:
        body = render(match.group(2))
        if not body.endswith("\n"):
            body += "\n"
        return match.group(1) + body + match.group(4)

    return _BLOCK.sub(replace, text)
