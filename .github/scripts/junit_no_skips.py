"""Fail when a JUnit XML report ran no test of the given modules, or skipped one of them.

    python .github/scripts/junit_no_skips.py REPORT.xml MODULE [MODULE...]

The e2e tests skip, with their reason, when no cluster is reachable; in the kind workflow a
cluster was just created, so such a skip is a failure that pytest alone would report as green.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET


def problems(report: str, modules: list[str]) -> list[str]:
    """What is wrong with the report for those test modules (nothing when every one ran)."""
    cases = [
        case
        for case in ET.parse(report).getroot().iter("testcase")
        if any(module in case.get("classname", "") for module in modules)
    ]
    found: list[str] = []
    if not cases:
        found.append(f"no test of {', '.join(modules)} in {report}")
    for case in cases:
        skipped = case.find("skipped")
        if skipped is not None:
            found.append(f"{case.get('classname')}::{case.get('name')} skipped: {skipped.get('message')}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    found = problems(argv[0], argv[1:])
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
