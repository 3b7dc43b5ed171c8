"""Decoding of POST/PUT bodies: JSON or form-urlencoded with PHP's bracket syntax
(``fields[name]=value``), both of which the API accepts (`rest-requests.md`)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

FORM_TYPE = "application/x-www-form-urlencoded"
_KEY_PARTS = re.compile(r"\[([^\]]*)\]")


def media_type(content_type: str) -> str:
    return content_type.split(";", maxsplit=1)[0].strip().lower()


def parse_body(content_type: str, body: bytes) -> Any:
    """The decoded body; None when empty or undecodable (the API then sees no data)."""
    if not body.strip():
        return None
    text = body.decode("utf-8", "replace")
    if media_type(content_type) == FORM_TYPE:
        return parse_form(text)
    try:
        return json.loads(text)
    except ValueError:
        return None


def parse_form(text: str) -> dict[str, Any]:
    """``fields[email]=x&interests[]=a`` -> ``{"fields": {"email": "x"}, "interests": ["a"]}``."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        bracket = key.find("[")
        base = key if bracket < 0 else key[:bracket]
        parts = _KEY_PARTS.findall(key[bracket:]) if bracket >= 0 else []
        _assign(result, [base, *parts], value)
    return result


def _assign(container: dict[str, Any], path: list[str], value: str) -> None:
    node: Any = container
    for position, part in enumerate(path):
        final = position == len(path) - 1
        if isinstance(node, list):
            if final:
                node.append(value)
                return
            child: Any = {}
            node.append(child)
            node = child
            continue
        if final:
            node[part] = value
            return
        wants_list = path[position + 1] == ""
        if part not in node or not isinstance(node[part], (dict, list)):
            node[part] = [] if wants_list else {}
        node = node[part]
