"""The HTML pages runs and benchmarks leave behind (``report.html``, ``summary.html``), written
from the Jinja2 templates beside this file: autoescaped, so no model text ever becomes markup, and
offline (inline CSS and SVG, images by relative path). Python computes the geometry (where each box,
point and bar goes); the templates only lay it out."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any


def render(name: str, **context: Any) -> str:
    """The page ``name`` (a template beside this file) filled with ``context``."""
    return _env().get_template(name).render(**context)


def macro(name: str, macro_name: str, *args: Any) -> str:
    """One macro of a template, rendered on its own (a page's SVG, for tests and reuse)."""
    return str(getattr(_env().get_template(name).module, macro_name)(*args))


@functools.cache
def _env() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
