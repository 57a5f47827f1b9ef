"""Errors a request gets back, in OpenAI's shape: ``{"error": {message, type, param, code}}``.

Every refusal names what was wrong (the field in ``param``); none carries a traceback.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the server refuses, with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, kind=self.kind, param=self.param, code=self.code)


def error_body(
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def bad_field(field: str, message: str) -> ApiError:
    """A 400 naming the request field at fault (a name a client made up may hold line breaks
    or control characters: the message shows them escaped, so it stays one line)."""
    shown = field if field.isprintable() else field.encode("unicode_escape").decode("ascii")
    return ApiError(400, f"{shown}: {message}", param=field, code="invalid_field")
