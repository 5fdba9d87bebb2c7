"""The `scanner` command: one small function per command; the work is done in the library.

Commands live in scanning.py (scan, watch), reading.py (results, show, detectors, errors),
status.py (status), evaluating.py (evaluate) and report.py (report); importing them registers
them on the app, in the order `--help` lists them.
"""

from scanner.cli import scanning  # noqa: F401 - registers scan, watch

# isort: split
from scanner.cli import reading  # noqa: F401 - registers results, show, detectors, errors

# isort: split
from scanner.cli import status  # noqa: F401 - registers status

# isort: split
from scanner.cli import evaluating  # noqa: F401 - registers evaluate

# isort: split
from scanner.cli import report  # noqa: F401 - registers report
from scanner.cli.common import app

__all__ = ["app"]
