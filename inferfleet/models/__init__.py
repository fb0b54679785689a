"""Models: the package format, the registry of versions and aliases, publishing, and
what a version declares for its requests (schema validation, preprocessing, sessions)."""
