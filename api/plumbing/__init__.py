"""What the routes use: dependencies, middleware, errors as problem+json, the OpenAPI
document, rate limits, admission, the Kafka producer, body checks, readiness, metrics,
and the operations behind the routes (submission, job rows, idempotency)."""
