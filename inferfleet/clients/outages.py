"""Exceptions that mean a service every job needs is away: Postgres, Kafka or S3.

Work that meets one is tried again later, whole; any other exception belongs to the
job, line or file being handled, and fails that one alone.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from kafka.errors import KafkaError
from sqlalchemy.exc import SQLAlchemyError

OUTAGES: tuple[type[Exception], ...] = (SQLAlchemyError, KafkaError, BotoCoreError, ClientError)
