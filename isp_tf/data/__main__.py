"""``python -m isp_tf.data SPEC [SPEC...]``: count a dataset's pairs per split, optionally decode them all.

    python -m isp_tf.data paired:/data/my_pairs zurich:/data/zurich --check --patch-size 256

Exit status 0 when every spec matches its layout (and, with ``--check``,
every pair decodes, is aligned and is at least one patch large), 2 otherwise
with ``error: <what is wrong>``.
"""
from __future__ import annotations

import argparse
import sys

from isp_tf.cli import add_debug_flag, run_command
from isp_tf.errors import IspTfError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m isp_tf.data",
        description="Count the (RAW, sRGB) pairs of dataset specs per split; --check decodes every pair.",
        epilog="Layouts: paired, zurich, fivek, paramisp, rendered, synthetic[:N[:PHOTOS]], rawnod "
               "(see isp_tf/data/layouts.py and isp_tf/data/rawnod.py).")
    parser.add_argument("specs", nargs="+", metavar="LAYOUT:PATH", help="dataset specs")
    parser.add_argument("--splits", default="train,val,test", help="comma-separated splits (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="decode every pair (slow)")
    parser.add_argument("--patch-size", type=int, default=0,
                        help="with --check: also require each pair to hold a patch of this size")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    return run_command(lambda: _check_specs(args), debug=args.debug)


def _check_specs(args) -> int:
    from tqdm import tqdm

    from isp_tf.data.layouts import find_examples, parse_spec
    from isp_tf.errors import DatasetError

    from isp_tf.data.layouts import decode_example

    status = 0
    for spec in args.specs:
        try:
            found = 0
            for split in [s.strip() for s in args.splits.split(",") if s.strip()]:
                try:
                    if parse_spec(spec)[0] == "rawnod":
                        from isp_tf.data.rawnod import find_detection_examples
                        count = len(find_detection_examples(spec, split))
                        print(f"{spec} [{split}]: {count} annotated RAW files")
                        found += 1
                        continue
                    examples = find_examples(spec, split)
                except DatasetError as exc:
                    if "no split list" not in str(exc) and "no COCO annotation file" not in str(exc):
                        raise
                    print(f"{spec} [{split}]: none ({exc})")
                    continue
                print(f"{spec} [{split}]: {len(examples)} pairs")
                found += 1
                if args.check:
                    for example in tqdm(examples, desc=f"{split} decode", leave=False):
                        decode_example(example, args.patch_size)
            if not found:
                raise DatasetError(f"{spec}: holds none of the splits {args.splits}")
        except IspTfError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
