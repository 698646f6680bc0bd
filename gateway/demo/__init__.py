"""`make demo`: the whole pipeline on one machine (run it with `python -m gateway.demo`)."""

from __future__ import annotations

__all__: list[str] = []
