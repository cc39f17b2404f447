"""One exception hierarchy for recbento; the service maps it to HTTP in one place.

Every error names the field, the value and what was expected, so that the CLI can
print it and the service can return it as a 4xx JSON body unchanged.
"""

from __future__ import annotations

__all__ = [
    "RecbentoError",
    "ValidationError",
    "NotFoundError",
    "EncoderError",
    "BundleError",
    "InputError",
    "BadRequest",
    "AuthError",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "StorageError",
]


class RecbentoError(Exception):
    """Root of every error recbento raises on purpose."""

    #: HTTP status the service answers with.
    status_code: int = 400

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value

    def to_dict(self) -> dict[str, object]:
        """JSON body for HTTP responses."""
        body: dict[str, object] = {"error": type(self).__name__, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.value is not None:
            body["value"] = _jsonable(self.value)
        return body


class InputError(RecbentoError):
    """A request or argument is out of range or malformed."""

    status_code = 422


class BadRequest(RecbentoError):
    """A request body that is not what an API reads at all (not JSON, say)."""

    status_code = 400


class AuthError(RecbentoError):
    """A protected API was called without the configured bearer token."""

    status_code = 401


class PayloadTooLarge(RecbentoError):
    """A request body over the service's size limit."""

    status_code = 413


class UnsupportedMediaType(RecbentoError):
    """A request body in a media type the API does not read."""

    status_code = 415


class ValidationError(RecbentoError):
    """An input table broke its schema; ``failures`` holds every problem found.

    ``failures`` is a DataFrame with columns ``table, column, row, value, check``.
    """

    status_code = 422

    def __init__(self, message: str, failures=None) -> None:  # noqa: ANN001
        super().__init__(message)
        self.failures = failures

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        if self.failures is not None:
            body["failures"] = [
                {k: _jsonable(v) for k, v in row.items()}
                for row in self.failures.head(100).to_dict(orient="records")
            ]
        return body


class NotFoundError(RecbentoError):
    """An id (item, model) does not exist."""

    status_code = 404


class EncoderError(RecbentoError):
    """An encoder checkpoint could not be loaded or used."""

    status_code = 500


class BundleError(RecbentoError):
    """A model bundle is missing, incomplete or from an incompatible version."""

    status_code = 500


class StorageError(RecbentoError):
    """A backing store (the feedback database) cannot be reached; retry later."""

    status_code = 503


def _jsonable(value: object) -> object:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        finite = value == value and value not in (float("inf"), float("-inf"))
        return value if finite else str(value)
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return _jsonable(value.item())
    except ImportError:  # pragma: no cover
        pass
    return str(value)
