"""``deploy/images.py`` (a script, not part of the package), loaded for the tests here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "deploy" / "images.py"

_spec = importlib.util.spec_from_file_location("vigie_deploy_images", SCRIPT)
assert _spec is not None and _spec.loader is not None
images = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = images  # dataclasses look their module up by name
_spec.loader.exec_module(images)

__all__ = ["images"]
