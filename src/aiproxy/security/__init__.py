"""Passwords, tokens, API keys and secrets at rest."""
