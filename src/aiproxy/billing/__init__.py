"""Prices, rates, quotas and usage accounting."""
