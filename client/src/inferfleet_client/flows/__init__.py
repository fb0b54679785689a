"""Every request the client makes, written once as flows (see `steps`) that the sync and
async clients drive."""
