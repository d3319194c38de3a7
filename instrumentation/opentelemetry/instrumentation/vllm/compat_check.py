"""``python -m opentelemetry.instrumentation.vllm.compat_check WHEEL_OR_SITE_PACKAGES...`` (``make compat-check
WHEEL=…``): what a vLLM wheel or installed tree lacks of what the instrumentation relies on (:mod:`.compat`), read from
its sources without installing or importing it. One line per feature: ``ok``, ``n/a`` (this vLLM has no such path)
or ``SKIPPED`` with each missing or changed thing; notes for optional details. Exit status 0 when every feature is
met, 1 when one would be left out, 2 for a bad argument (one line on stderr).
"""

from __future__ import annotations

import os
import sys
import zipfile

from opentelemetry.instrumentation.vllm.compat import FEATURES, Report, check, dir_reader, wheel_reader


def format_report(report: Report, title: str) -> str:
    """The report as text: one line per feature (ok / skipped, with why), then the notes."""
    lines = [title]
    for feature in FEATURES:
        problems = report.problems.get(feature) or []
        if feature in report.not_applicable:
            lines.append(f"  n/a      {feature} (this vLLM has no such path)")
            continue
        lines.append(f"  {'ok     ' if not problems else 'SKIPPED'}  {feature}")
        lines += [f"             - {p}" for p in problems]
        lines += [f"             (note: {n})" for n in report.notes.get(feature) or []]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """The report per argument (a ``.whl`` file, or a directory holding ``vllm/``); see the module doc for the
    exit status."""
    if len(argv) < 2:
        print("usage: python -m opentelemetry.instrumentation.vllm.compat_check WHEEL_OR_SITE_PACKAGES...",
              file=sys.stderr)
        return 2
    worst = 0
    for arg in argv[1:]:
        if os.path.isfile(arg) and arg.endswith(".whl"):
            try:
                read = wheel_reader(arg)
            except (zipfile.BadZipFile, OSError) as exc:
                print(f"compat-check: {arg}: not a readable wheel ({exc})", file=sys.stderr)
                return 2
        elif os.path.isdir(os.path.join(arg, "vllm")):
            read = dir_reader(arg)
        else:
            print(f"compat-check: {arg}: neither a .whl file nor a directory holding vllm/", file=sys.stderr)
            return 2
        report = check(read)
        print(format_report(report, arg))
        if report.missing_features():
            worst = 1
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv))
