"""Adapters that read changes from CRM APIs."""

from __future__ import annotations

__all__: list[str] = []
