"""The JSON API under /api: console auth, user self-service and administration."""
