"""Polling: one task per instance and resource that reads changes and commits them with its checkpoint."""
