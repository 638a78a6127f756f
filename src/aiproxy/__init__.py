"""aiproxy: a multi-tenant relay for Claude, OpenAI and Gemini APIs."""

__version__ = "0.1.0"
