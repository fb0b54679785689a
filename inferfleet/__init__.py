"""inferfleet: a queue-driven asynchronous inference worker fleet.

This shared package holds the contracts every service agrees on: settings, schemas,
tables, topics, the object store, the model registry and the error hierarchy. It imports
no service package (`api`, `worker`); the services import it.
"""

__version__ = "0.1.0"
