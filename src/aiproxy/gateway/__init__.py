"""The hot path: the proxy endpoints, from API key to upstream bytes and back."""
