"""The ``profile.json`` schema (a JSON-Schema subset) and a small validator for it.

``profile_schema()`` returns a fresh dict each call. ``validate(doc)`` checks ``doc`` against it and returns the
list of problems (empty when valid). The validator supports the keywords the schema uses: ``type`` (one or a list),
``properties``, ``required``, ``additionalProperties`` (bool or schema), ``items``, ``enum``, ``minimum`` and
local ``$ref`` (``#/definitions/NAME``).
"""
from __future__ import annotations

from typing import Any, List, Optional

__all__ = ["FORMAT", "SCHEMA_VERSION", "profile_schema", "validate"]

FORMAT = "cellpose-tb-profile"
SCHEMA_VERSION = 1

_NUM = {"type": "number", "minimum": 0}
_INT = {"type": "integer", "minimum": 0}
_OPT_INT = {"type": ["integer", "null"]}
_OPT_NUM = {"type": ["number", "null"]}


def _obj(props: dict, extra: bool = False) -> dict:
    """An object schema whose ``props`` are all required; other keys allowed only when ``extra``."""
    return {"type": "object", "properties": dict(props), "required": sorted(props), "additionalProperties": extra}


def _memory() -> dict:
    keys = ("rss_before_bytes", "rss_after_bytes", "rss_delta_bytes", "peak_rss_bytes", "peak_above_entry_bytes",
            "peak_above_baseline_bytes", "tracemalloc_peak_above_entry_bytes", "cuda_peak_bytes",
            "cuda_peak_above_entry_bytes")
    props = {k: dict(_OPT_INT) for k in keys}
    props.update({"peak_b_per_px": dict(_OPT_NUM), "peak_above_entry_b_per_px": dict(_OPT_NUM)})
    return _obj(props)


def _stage() -> dict:
    return _obj({
        "name": {"type": "string"},
        "path": {"type": "array", "items": {"type": "string"}},
        "calls": dict(_INT),
        "wall_s": dict(_NUM),
        "cpu_s": dict(_NUM),
        "pct_of_total": dict(_NUM),
        "counters": {"type": "object", "additionalProperties": {"type": "number"}},
        "memory": {"type": ["object", "null"], "$ref": "#/definitions/memory"},
        "trace_events_dropped": dict(_INT),
        "px_per_s": dict(_OPT_NUM),
        "cells_per_s": dict(_OPT_NUM),
        "children": {"type": "array", "items": {"$ref": "#/definitions/stage"}},
    })


def _image() -> dict:
    schema = _obj({
        "label": {"type": "string"},
        "path": {"type": ["string", "null"]},
        "shape": {"type": ["array", "null"], "items": dict(_INT)},
        "pixels": dict(_OPT_INT),
        "cells": dict(_OPT_INT),
        "options": {"type": "object"},
        "memory_mode": {"enum": ["rss", "tracemalloc", "off"]},
        "wall_s": dict(_NUM),
        "cpu_s": dict(_NUM),
        "coverage": dict(_NUM),
        "baseline_rss_bytes": dict(_OPT_INT),
        "peak_rss_bytes": dict(_OPT_INT),
        "peak_b_per_px": dict(_OPT_NUM),
        "stages": {"$ref": "#/definitions/stage"},
    })
    schema["properties"]["blockwise"] = {"type": "object"}
    return schema


def _environment() -> dict:
    return _obj({
        "python": {"type": "string"},
        "platform": {"type": "string"},
        "packages": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "cpu_model": {"type": ["string", "null"]},
        "cpu_generation": {"type": ["string", "null"]},
        "cpu_count": dict(_OPT_INT),
        "cpu_affinity": dict(_OPT_INT),
        "torch": {"type": ["object", "null"]},
        "device": {"type": ["string", "null"]},
        "thread_env": {"type": "object", "additionalProperties": {"type": "string"}},
        "flags": {"type": "object"},
    }, extra=True)


def _summary() -> dict:
    return _obj({
        "images": dict(_INT),
        "wall_s": dict(_NUM),
        "cpu_s": dict(_NUM),
        "pixels": dict(_OPT_INT),
        "px_per_s": dict(_OPT_NUM),
        "peak_rss_bytes": dict(_OPT_INT),
        "stages": {"type": ["object", "null"], "$ref": "#/definitions/stage"},
    })


def profile_schema() -> dict:
    """Return the schema of ``profile.json`` (documented in ``docs/profiling.md``)."""
    schema = _obj({
        "format": {"enum": [FORMAT]},
        "version": {"enum": [SCHEMA_VERSION]},
        "created_utc": {"type": "string"},
        "environment": {"$ref": "#/definitions/environment"},
        "images": {"type": "array", "items": {"$ref": "#/definitions/image"}},
        "summary": {"$ref": "#/definitions/summary"},
    })
    schema["definitions"] = {"stage": _stage(), "memory": _memory(), "image": _image(),
                             "environment": _environment(), "summary": _summary()}
    return schema


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(doc: Any, schema: Optional[dict] = None) -> List[str]:
    """Return the problems of ``doc`` against ``schema`` (default: ``profile_schema()``); empty when valid."""
    schema = profile_schema() if schema is None else schema
    errors: List[str] = []
    _check(doc, schema, schema, "$", errors)
    return errors


def _resolve(ref: str, root: dict) -> dict:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref are supported, got {ref!r}")
    node = root
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _check(value: Any, schema: dict, root: dict, where: str, errors: List[str]) -> None:
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_TYPES[t](value) for t in types):
            errors.append(f"{where}: expected {'/'.join(types)}, got {type(value).__name__}")
            return
    if value is None:
        return
    if "$ref" in schema:
        _check(value, _resolve(schema["$ref"], root), root, where, errors)
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        errors.append(f"{where}: {value} < minimum {schema['minimum']}")
    if isinstance(value, dict):
        _check_object(value, schema, root, where, errors)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            _check(item, schema["items"], root, f"{where}[{i}]", errors)


def _check_object(value: dict, schema: dict, root: dict, where: str, errors: List[str]) -> None:
    props = schema.get("properties", {})
    for key in schema.get("required", ()):
        if key not in value:
            errors.append(f"{where}: missing required key {key!r}")
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in props:
            _check(item, props[key], root, f"{where}.{key}", errors)
        elif extra is False:
            errors.append(f"{where}: unexpected key {key!r}")
        elif isinstance(extra, dict):
            _check(item, extra, root, f"{where}.{key}", errors)
