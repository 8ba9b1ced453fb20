"""Writing policies as a policy file: the export format that ``stepup export`` and the admin write.

Pure Python: nothing here imports Django.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml

from stepup.policy.locate import YAML_TAG, Format
from stepup.policy.model import PolicySpec


class _Dumper(yaml.SafeDumper):
    """Never anchors (the loader refuses them); short flat collections on one line."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _is_flat(data: list[Any] | dict[str, Any]) -> bool:
    values = data.values() if isinstance(data, dict) else data
    return all(isinstance(v, str | int | float) or (isinstance(v, list) and _is_flat(v)) for v in values)


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.SequenceNode:
    return dumper.represent_sequence(f"{YAML_TAG}seq", data, flow_style=_is_flat(data))


def _represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.MappingNode:
    flow = len(data) <= 2 and _is_flat(data) and len(str(data)) <= 60
    return dumper.represent_mapping(f"{YAML_TAG}map", data.items(), flow_style=flow)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # PyYAML folds these line breaks when it writes them plain or single-quoted.
    style = '"' if any(c in data for c in "\x85\u2028\u2029") else None
    return dumper.represent_scalar(f"{YAML_TAG}str", data, style=style)


class _Block(dict[str, Any]):
    """A mapping always written in block style (the document itself)."""


def _represent_block(dumper: yaml.SafeDumper, data: _Block) -> yaml.MappingNode:
    return dumper.represent_mapping(f"{YAML_TAG}map", data.items(), flow_style=False)


_Dumper.add_representer(_Block, _represent_block)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(dict, _represent_dict)


def dump_policies(specs: Sequence[PolicySpec], fmt: Format = "yaml") -> str:
    """Write policies as a policy file (``version: 1`` and ``policies:``).

    ``load_text(dump_policies(specs)).policies == tuple(specs)``.
    """
    document = _Block(version=1, policies=[spec.to_dict() for spec in specs])
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if fmt != "yaml":
        raise ValueError(f"unknown format {fmt!r}; use 'yaml' or 'json'")
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
