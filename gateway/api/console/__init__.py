"""The web console, served under /console/ on the admin API's port."""

from __future__ import annotations

from gateway.api.console._app import create_console_app

__all__ = ["create_console_app"]
