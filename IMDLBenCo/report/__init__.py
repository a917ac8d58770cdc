"""``benco report``: a static HTML report from run folders (train, test, robustness, predictions).

    from IMDLBenCo.report import build_report
    build_report(["output_dir/train", "output_dir/robust"], out="report.html")

Reads the files listed in docs/ARCHITECTURE.md "Run folders"; plots with matplotlib (Agg).
Importing this package is cheap: matplotlib, numpy and Pillow are imported when a report is built.
"""

from .build import build_report, report_paths
from .runs import RunFolder, RunFolderError, load_run

__all__ = ["build_report", "report_paths", "load_run", "RunFolder", "RunFolderError"]
