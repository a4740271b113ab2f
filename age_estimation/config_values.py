"""The values of a pipeline YAML: each coerced to its config field's type, and ``section.key=value``
overrides applied to the raw mapping. Read by ``config.load_config`` and ``config.from_dict``."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import yaml

from age_estimation.config_keys import ConfigError


def coerce_value(hint: Any, value: Any, origin: str, key: str) -> Any:
    """``value`` of the YAML as the type ``hint`` (a scalar, ``Literal``, optional, list or dict); a value of
    another type is a ``ConfigError`` naming the file and the key."""
    origin_type = typing.get_origin(hint)
    if origin_type is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{origin}: '{key}' must be one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if origin_type in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return coerce_value(inner[0], value, origin, key)
    if origin_type is dict:
        key_type, value_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{origin}: '{key}' must be a mapping, got {value!r}")
        return {coerce_value(key_type, k, origin, f"{key} key"): coerce_value(value_type, v, origin, f"{key}[{k!r}]")
                for k, v in value.items()}
    if origin_type is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{origin}: '{key}' must be a list, got {value!r}")
        return [coerce_value(item_type, v, origin, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{origin}: '{key}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{origin}: '{key}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{origin}: '{key}' must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{origin}: '{key}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"{origin}: '{key}' has an unsupported type {hint}")


def apply_override(raw: dict[str, Any], item: str, origin: str) -> None:
    """Set the dotted key of a ``section.key=value`` override in the raw YAML mapping (value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"{origin}: override {item!r} must look like section.key=value")
    dotted, text = item.split("=", 1)
    parts = dotted.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{origin}: override {item!r}: '{part}' is not a section")
    node[parts[-1]] = yaml.safe_load(text)
