"""Outputs: per-scan files, study tables, statistics, plots, Prism export and the HTML report."""

from .scan_outputs import write_scan_outputs

__all__ = ["write_scan_outputs"]
