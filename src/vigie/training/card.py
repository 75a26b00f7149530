"""Model cards: one context (also written as JSON), rendered with the model's template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2

from vigie.errors import ErrorCode, VigieError


def template_path(models_dir: Path, name: str) -> Path:
    """The model card template of model ``name``."""
    return models_dir / name / "model_card.md.j2"


def render_card(models_dir: Path, name: str, context: dict[str, Any]) -> str:
    """Render the model card Markdown from its template.

    Raises:
        VigieError: CONFIGURATION when the template is missing or fails to render.
    """
    path = template_path(models_dir, name)
    try:
        environment = jinja2.Environment(
            loader=jinja2.FileSystemLoader(path.parent),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,  # Markdown, not HTML
        )
        environment.filters["fmt"] = _fmt
        return environment.get_template(path.name).render(**context)
    except jinja2.TemplateError as err:
        raise VigieError(
            ErrorCode.CONFIGURATION, f"cannot render the model card {path}: {err}"
        ) from err


def write_card(
    models_dir: Path, name: str, context: dict[str, Any], folder: Path
) -> tuple[Path, Path]:
    """Write ``model_card.md`` and ``model_card.json`` into ``folder``."""
    markdown = folder / "model_card.md"
    markdown.write_text(render_card(models_dir, name, context), encoding="utf-8")
    data = folder / "model_card.json"
    data.write_text(json.dumps(context, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return markdown, data


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)
