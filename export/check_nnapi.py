#!/usr/bin/env python3
"""Would every op of a .tflite run under the Android NNAPI delegate at API 29 (NNAPI 1.2)?

    python export/check_nnapi.py model.tflite              # table of refused ops
    python export/check_nnapi.py model.tflite --all-ops    # every op with its verdict
    python export/check_nnapi.py model.tflite --json report.json
    python export/check_nnapi.py --rules                   # what each rule id means

Exit status: 0 every op would be delegated, 1 some would stay on the CPU,
2 bad input (missing or damaged file, bad arguments).
"""
import argparse
import pathlib
import sys

try:
    import isp_tf  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from isp_tf.errors import IspTfError  # noqa: E402
from isp_tf.export.nnapi import API_LEVEL, RULES, check_nnapi  # noqa: E402
from isp_tf.utils import atomic_write  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="check_nnapi.py",
        description="Check a .tflite against the TFLite NNAPI delegate's rules for Android API "
                    "29 (NNAPI 1.2), op by op. Exit 0: fully delegated; 1: some ops would run "
                    "on the CPU; 2: bad input.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Rules are read from tensorflow/lite/delegates/nnapi/nnapi_delegate.cc "
               "(Validate); see isp_tf/export/nnapi.py.")
    p.add_argument("tflite", nargs="?", help="the .tflite file to check")
    p.add_argument("--api-level", type=int, default=API_LEVEL,
                   help="Android API level to check against (default: %(default)s = NNAPI 1.2)")
    p.add_argument("--json", metavar="PATH",
                   help="also write the report as JSON to PATH ('-' for standard output)")
    p.add_argument("--all-ops", action="store_true", help="list every op, not only the refused ones")
    p.add_argument("--rules", action="store_true", help="list the rule ids and exit")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.rules:
        width = max(map(len, RULES))
        for rule, text in RULES.items():
            print(f"{rule.ljust(width)}  {text}")
        return 0
    if not args.tflite:
        parser.error("the .tflite file is required (or --rules)")
    if not 27 <= args.api_level <= 35:
        parser.error(f"--api-level {args.api_level}: NNAPI exists from API 27")
    try:
        report = check_nnapi(args.tflite, api_level=args.api_level)
    except IspTfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json == "-":
        print(report.to_json())
    else:
        print(report.format_table(all_ops=args.all_ops))
        if args.json:
            with atomic_write(args.json, "w") as f:
                f.write(report.to_json() + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
