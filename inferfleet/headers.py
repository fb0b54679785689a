"""Header names shared by Kafka records, HTTP requests and webhook POSTs.

Kept apart from `inferfleet.tracing` so that code which only names a header (the job
message) does not import OpenTelemetry.
"""

from __future__ import annotations

# The W3C trace context of the work a record, request or delivery continues.
TRACEPARENT = "traceparent"
