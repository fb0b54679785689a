"""The Celery side: webhook dispatch now; nightly batch triggers and sweeps (beat) later."""
