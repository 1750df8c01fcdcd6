"""Helpers for tests that start real processes (ZEO servers, dispatchers)."""
