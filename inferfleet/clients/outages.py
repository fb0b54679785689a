"""Exceptions that mean a service every job needs is away: Postgres, Kafka or S3.

Work that meets one is tried again later, whole; any other exception belongs to the
job, line or file being handled, and fails that one alone.

`DATABASE_AWAY` is the narrower kind where a statement's own values matter: the database
did not answer (connection lost or refused, no pooled connection in time). A statement
it answered with an error (a value it cannot store, a broken constraint) was refused for
what it carried.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from kafka.errors import KafkaError
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

OUTAGES: tuple[type[Exception], ...] = (SQLAlchemyError, KafkaError, BotoCoreError, ClientError)
DATABASE_AWAY: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeoutError)
