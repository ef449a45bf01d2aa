"""Table demo reports side by side: each instance's verdict, the mean and the spread.

    .venv/bin/python benchmarks/demo_table.py benchmarks/results/demo-*/report.json

Reads the ``report.json`` of finished ``mmadapt demo`` runs (any seeds, lexicons, word orders) and prints
the Markdown table that ``mmadapt demo --instances N`` writes to ``instances.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmadapt.report import instances_table  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reports", nargs="+", help="report.json files of finished demo runs")
    args = p.parse_args(argv)
    reports = []
    for path in args.reports:
        try:
            with open(path, encoding="utf-8") as fh:
                report = json.load(fh)
            instances_table([report])  # a field missing shows here, named with its file
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"error: {path}: not a demo report.json ({type(e).__name__}: {e}); pass the report.json of a "
                  "finished `mmadapt demo` run", file=sys.stderr)
            return 2
        reports.append(report)
    print("\n".join(instances_table(reports)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
