"""Reports (Markdown, HTML, plots) and the static trajectory viewer of run and sweep directories."""

from leap.reports.report import ReportFiles, build_report
from leap.reports.rundata import NotARunError, RunData

__all__ = ["NotARunError", "ReportFiles", "RunData", "build_report"]
