"""inferfleet: a queue-driven asynchronous inference worker fleet.

This shared package holds what two or more services use, by concept: `clients`
(Postgres, Kafka, S3), `models`, `jobs`, `batches` and `tenants`; at the top, what every
concept uses (settings, errors, ids, tables, JSON depth) and the `inferfleet` command.
It imports no service package; the services import it (docs/architecture.md).
"""

__version__ = "0.1.0"
