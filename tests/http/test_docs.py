"""docs/http-reference.md is generated from the OpenAPI document, so it must match what the code declares."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from service.http.spec import TAGS, EndpointSpec

ROOT = Path(__file__).resolve().parents[2]


def _generator() -> ModuleType:
    """docs/generate_reference.py, loaded from its file (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("generate_reference", ROOT / "docs" / "generate_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_http_reference_is_current(tmp_path):
    generator = _generator()
    expected = generator.render(generator.openapi_document(tmp_path))
    current = generator.OUTPUT.read_text(encoding="utf-8") if generator.OUTPUT.exists() else ""
    assert current == expected, "docs/http-reference.md differs from the endpoints' declarations; run `make docs` and commit the result"


def test_the_reference_names_every_operation(tmp_path):
    generator = _generator()
    doc = generator.openapi_document(tmp_path)
    text = generator.render(doc)
    for path, operations in doc["paths"].items():
        for method in operations:
            assert f"### `{method.upper()} {path}`" in text


def test_every_section_has_operations_and_an_undeclared_section_is_refused(tmp_path):
    doc = _generator().openapi_document(tmp_path)
    used = {op["tags"][0] for operations in doc["paths"].values() for op in operations.values()}
    assert [t["name"] for t in doc["tags"]] == list(TAGS) and used == set(TAGS)
    with pytest.raises(ValueError, match="add it to TAGS"):
        EndpointSpec("An endpoint in no section", roles=None, tag="misc")
