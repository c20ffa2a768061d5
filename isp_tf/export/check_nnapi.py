"""``python -m isp_tf.export.check_nnapi``: would every op of a .tflite run under the Android
NNAPI delegate at API 29 (NNAPI 1.2)?  (``python export/check_nnapi.py`` runs this same command.)

    python -m isp_tf.export.check_nnapi model.tflite              # table of refused ops
    python -m isp_tf.export.check_nnapi model.tflite --all-ops    # every op with its verdict
    python -m isp_tf.export.check_nnapi model.tflite --json report.json
    python -m isp_tf.export.check_nnapi --rules                   # what each rule id means

Exit status: 0 every op would be delegated, 1 some would stay on the CPU,
2 bad input (missing or damaged file, bad arguments).
"""
import argparse
import sys

from isp_tf.cli import add_debug_flag, run_command
from isp_tf.export.nnapi import API_LEVEL, RULES, check_nnapi
from isp_tf.utils import atomic_write


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m isp_tf.export.check_nnapi",
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
    add_debug_flag(p)
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
    return run_command(lambda: _check(args), debug=args.debug)


def _check(args) -> int:
    report = check_nnapi(args.tflite, api_level=args.api_level)
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
