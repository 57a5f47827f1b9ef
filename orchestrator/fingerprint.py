"""Fingerprints of configs: a short hash of the fields that decide results.

A config class lists in ``plumbing`` the fields that change only how fast or where work runs
(servers, batch sizes, time-outs, cache sizes); they are left out, recursively through nested
configs, so moving a server or resizing a batch keeps the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python


def decisive(value: Any) -> Any:
    """``value`` as plain JSON data, without the plumbing fields of any config in it."""
    if isinstance(value, BaseModel):
        plumbing: frozenset[str] = getattr(type(value), "plumbing", frozenset())
        return {
            name: decisive(getattr(value, name))
            for name in type(value).model_fields
            if name not in plumbing
        }
    if isinstance(value, list | tuple):
        return [decisive(item) for item in value]
    if isinstance(value, dict):
        return {str(key): decisive(item) for key, item in value.items()}
    return to_jsonable_python(value)


def fingerprint(value: Any) -> str:
    """A 16-hex-digit hash of :func:`decisive` data."""
    text = json.dumps(decisive(value), sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
