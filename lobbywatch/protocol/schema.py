"""JSON Schema of every payload, generated from the models (docs/schema/*.json)."""

from __future__ import annotations

import json
from pathlib import Path

from lobbywatch.protocol.messages import MODELS


def schemas() -> dict[str, dict[str, object]]:
    return {channel.value: model.model_json_schema(mode="validation") for channel, model in MODELS.items()}


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = folder / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written
