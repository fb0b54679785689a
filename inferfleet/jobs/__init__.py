"""Jobs once accepted: their queue message, row view, claim-checked inputs, the
outbox of their events and the webhooks that deliver them."""
