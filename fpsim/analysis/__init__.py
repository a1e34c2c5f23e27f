"""Analysis tools: format tables, error metrics (more in later modules)."""

from .tables import format_table, rounding_error_summary

__all__ = ["format_table", "rounding_error_summary"]
