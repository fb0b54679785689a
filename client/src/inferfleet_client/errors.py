"""Every error the client raises, one class per problem status.

    InferfleetError
    ├── ConnectionFailedError      the server could not be reached (after retries)
    ├── WaitTimeoutError           a wait ended before the object did
    ├── WebhookVerificationError   a webhook's signature or timestamp did not hold
    └── APIError                   the server answered a problem (RFC 9457)
        ├── BadRequestError            400
        ├── AuthenticationError        401
        ├── PermissionDeniedError      403
        ├── NotFoundError              404
        ├── ConflictError              409 (`job_status` / `batch_status` members)
        ├── PayloadTooLargeError       413
        ├── UnprocessableError         422 (`errors` names every offending field)
        ├── RateLimitError             429 (`retry_after`)
        ├── ServiceUnavailableError    503 (`retry_after`)
        └── ServerError                any other 5xx

`APIError.retriable` says whether the same request may succeed later unchanged.
"""

from __future__ import annotations

from typing import Any

from inferfleet_client.models import ProblemFieldError


class InferfleetError(Exception):
    """Raised for every failure of the client; catch this to catch them all."""


class ConnectionFailedError(InferfleetError):
    """Raised when the server could not be reached, after the retries allowed."""


class WaitTimeoutError(InferfleetError):
    """Raised when a wait's timeout passed before the job or batch ended.

    `last` is the object as it was last seen (a `Job`, a `Batch`, or a list of jobs).
    """

    def __init__(self, message: str, last: Any) -> None:
        super().__init__(message)
        self.last = last


class WebhookVerificationError(InferfleetError):
    """Raised by `verify_webhook` when a request is not a valid, fresh, signed webhook."""


class APIError(InferfleetError):
    """Raised when the server answers a problem; carries the problem's members.

    `extensions` holds members beyond RFC 9457's and the API's own (for example
    `job_status` on a 409).
    """

    retriable = False

    def __init__(
        self,
        status: int,
        *,
        type: str = "about:blank",
        title: str = "",
        detail: str = "",
        request_id: str | None = None,
        errors: list[ProblemFieldError] | None = None,
        extensions: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.request_id = request_id
        self.errors = errors or []
        self.extensions = extensions or {}
        self.retry_after = retry_after
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.status} {self.title}".strip()
        if self.detail:
            text += f": {self.detail}"
        if self.request_id:
            text += f" (request {self.request_id})"
        return text


class BadRequestError(APIError):
    """Raised on 400: the body could not be read."""


class AuthenticationError(APIError):
    """Raised on 401: no API key, or an unknown or revoked one."""


class PermissionDeniedError(APIError):
    """Raised on 403: the key lacks the scope, or a named S3 URI lies outside the tenant."""


class NotFoundError(APIError):
    """Raised on 404: no such object (another tenant's objects are 404 too)."""


class ConflictError(APIError):
    """Raised on 409: the object's state forbids the request, or an Idempotency-Key was
    reused with a different body."""

    @property
    def job_status(self) -> str | None:
        """The job's status when the conflict is about a job, else None."""
        value = self.extensions.get("job_status")
        return None if value is None else str(value)

    @property
    def batch_status(self) -> str | None:
        """The batch's status when the conflict is about a batch, else None."""
        value = self.extensions.get("batch_status")
        return None if value is None else str(value)


class PayloadTooLargeError(APIError):
    """Raised on 413: the body is larger than the route's limit."""


class UnprocessableError(APIError):
    """Raised on 422: `errors` lists every offending field, with its location and value."""


class RateLimitError(APIError):
    """Raised on 429 once the retries allowed are spent."""

    retriable = True


class ServiceUnavailableError(APIError):
    """Raised on 503 once the retries allowed are spent: nothing was queued."""

    retriable = True


class ServerError(APIError):
    """Raised on any other 5xx."""

    retriable = True


BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}
_KNOWN = {"type", "title", "status", "detail", "request_id", "errors"}


def problem_error(
    status: int, body: Any, request_id: str | None = None, retry_after: float | None = None
) -> APIError:
    """The exception of an error answer: its class from `status`, its fields from the
    problem document `body` (anything else, such as a proxy's HTML, gives a bare one)."""
    cls = BY_STATUS.get(status, ServerError if status >= 500 else APIError)
    if not isinstance(body, dict):
        return cls(status, title="", detail=str(body)[:300], request_id=request_id)
    raw_errors = body.get("errors")
    errors = [
        ProblemFieldError.model_validate(e)
        for e in (raw_errors if isinstance(raw_errors, list) else [])
        if isinstance(e, dict)
    ]
    return cls(
        status,
        type=str(body.get("type", "about:blank")),
        title=str(body.get("title", "")),
        detail=str(body.get("detail", "")),
        request_id=body.get("request_id") or request_id,
        errors=errors,
        extensions={k: v for k, v in body.items() if k not in _KNOWN},
        retry_after=retry_after,
    )
