"""The inferfleet API from Python: `Client` (sync) and `AsyncClient` (asyncio), typed
models of every body, one exception per problem status, and `verify_webhook` for
receivers."""

from inferfleet_client.async_client import AsyncClient
from inferfleet_client.client import Client
from inferfleet_client.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailedError,
    InferfleetError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
    UnprocessableError,
    WaitTimeoutError,
    WebhookVerificationError,
)
from inferfleet_client.flows.jobs import Progress
from inferfleet_client.models import (
    Batch,
    BatchProgress,
    BatchResult,
    BatchWebhook,
    BulkItem,
    Delivery,
    Event,
    Job,
    JobCreated,
    Model,
    ModelSummary,
    Webhook,
)
from inferfleet_client.retries import RetryPolicy
from inferfleet_client.webhooks import verify_webhook

__all__ = [
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BatchProgress",
    "BatchResult",
    "BatchWebhook",
    "BulkItem",
    "Client",
    "ConflictError",
    "ConnectionFailedError",
    "Delivery",
    "Event",
    "InferfleetError",
    "Job",
    "JobCreated",
    "Model",
    "ModelSummary",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Progress",
    "RateLimitError",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailableError",
    "UnprocessableError",
    "WaitTimeoutError",
    "Webhook",
    "WebhookVerificationError",
    "verify_webhook",
]
