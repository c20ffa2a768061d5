"""python -m isp_tf.figures: check every figure the README states (run it from the checkout).

``--check`` recomputes each figure that is cheap to recompute (parameter
counts, the classical renderer against LibRaw, the held-out evaluation of the
shipped weights, the exports' sizes and parity dB: minutes on a 2-core CPU),
compares it with the value the README states within the tolerance the table
gives (isp_tf/figures/table.py), and checks that the README still prints the
figure's text.  Figures that are expensive to rerun are handled two ways:
benchmark latencies and memory, and the training records of the shipped
weights, are compared with the committed results files they were copied
from (benchmarks/results/*.json, isp_tf/models/*/weights/*.json), not rerun;
the QAT fine-tune and the GenISP low-light experiment are rerun only with
``--full`` (tens of minutes).  Bounds the README promises ("max abs <= 1e-4,
tested") are checked to still have their test.

Examples::

    python -m isp_tf.figures                      # list the table, recompute nothing
    python -m isp_tf.figures --check              # recompute the cheap ones (minutes)
    python -m isp_tf.figures --check --only params --only bench
    python -m isp_tf.figures --check --full --json figures.json

Exit status: 0 every checked figure within tolerance, 1 some figure drifted,
is no longer in the README, or could not be recomputed (each named in the
last line), 2 bad usage (e.g. an --only that matches nothing).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

from isp_tf.cli import add_debug_flag, run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m isp_tf.figures", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true",
                   help="recompute the cheap figures, compare the committed ones, and compare all with the README")
    p.add_argument("--full", action="store_true", help="with --check: also rerun the expensive figures")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="figure keys to take (a prefix or a glob such as 'bench.*'; repeatable)")
    p.add_argument("--readme", metavar="FILE", help="the README to compare with (default: README.md of the checkout)")
    p.add_argument("--json", metavar="FILE", help="also write the verdicts as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_flag(p)
    return p


def _list(figures) -> str:
    from isp_tf.figures.check import _fmt
    from isp_tf.figures.measure import GROUPS

    lines = ["| figure | stated | tolerance | kind | how it is recomputed | README text |", "|---|---|---|---|---|---|"]
    for f in figures:
        g = GROUPS[f.group]
        lines.append(f"| {f.key} | {_fmt(f.value, f)} {f.unit} | +-{_fmt(f.tolerance, f)} | {g.kind} | {g.how} "
                     f"(`{f.field}`) | {f.text!r} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from isp_tf.errors import IspTfError
        from isp_tf.figures.check import README, check, format_rows, select
        from isp_tf.figures.table import FIGURES

        figures = select(FIGURES, args.only)
        if not figures:
            raise IspTfError(f"--only {' '.join(args.only)} matches no figure; keys look like "
                             f"{', '.join(f.key for f in FIGURES[:3])}")
        if not args.check:
            print(_list(figures))
            return 0
        readme = pathlib.Path(args.readme) if args.readme else README
        if not readme.is_file():
            from isp_tf.errors import MissingFileError

            raise MissingFileError(f"--readme {readme}: no such file")
        from isp_tf.cli import debug_enabled

        rows = check(figures, readme_text=readme.read_text(), full=args.full, progress=not args.quiet,
                     debug=debug_enabled(args))
        print(format_rows(rows))
        if args.json:
            from isp_tf.utils import atomic_write

            with atomic_write(args.json, "w") as f:
                json.dump([{"key": r.figure.key, "status": r.status, "stated": r.figure.value,
                            "recomputed": r.measured, "tolerance": r.figure.tolerance, "kind": r.kind,
                            "readme_line": r.line, "note": r.note} for r in rows], f, indent=1)
                f.write("\n")
        return 1 if any(r.bad for r in rows) else 0

    return run_command(body, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
