"""Write one JSON Schema per data contract, for non-Python clients."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, TypeAdapter

from mmalign.schemas import EXPORTED_MODELS, SCHEMA_VERSION


def export_schemas(out_dir: str | Path) -> list[Path]:
    """Write ``<name>.schema.json`` for every exported model; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in EXPORTED_MODELS.items():
        schema = (
            model.model_json_schema()
            if isinstance(model, type) and issubclass(model, BaseModel)
            else TypeAdapter(model).json_schema()
        )
        schema.setdefault("title", name)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["x-mmalign-schema-version"] = SCHEMA_VERSION
        path = out / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
