"""Polling: date formats, URL templates and the pollers that use them."""

from __future__ import annotations

from gateway.polling.dates import DateFormat, DateFormatError, DateValueError, compile_date_format, parse_zone
from gateway.polling.templates import TemplateError, UrlTemplate, compile_template

__all__ = [
    "DateFormat",
    "DateFormatError",
    "DateValueError",
    "TemplateError",
    "UrlTemplate",
    "compile_date_format",
    "compile_template",
    "parse_zone",
]
