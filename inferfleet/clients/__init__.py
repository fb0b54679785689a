"""Clients of the systems every service talks to: Postgres, Kafka and S3, and the
exceptions that say one of them is away."""
