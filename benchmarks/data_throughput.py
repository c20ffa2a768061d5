"""tf.data throughput: 256x256 training pairs per second from DNG files, with and without the cache.

    python benchmarks/data_throughput.py                      # markdown table
    python benchmarks/data_throughput.py --json out.json      # and the numbers as JSON

Each configuration builds :func:`isp_tf.data.build_dataset` on ``--spec``
(default: the sample DNGs with classical-render targets, so every uncached
pair costs a DNG decode, a render, a crop and an augmentation; ``--paired``
instead writes each render once as a PNG beside a link to its DNG, so a pair
costs a DNG and a PNG decode, as in a FiveK-like folder), skips ``--warmup``
batches, then times ``--batches`` batches. With the cache, the warm-up first
runs one full epoch so the timed batches come from memory.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(spec, cache, patch_size, batch_size, batches, warmup, patches_per_image=1, seed=0) -> dict:
    from isp_tf.data import build_dataset, count_examples

    ds = build_dataset(spec, patch_size=patch_size, batch_size=batch_size, seed=seed, cache=cache,
                       patches_per_image=patches_per_image)
    it = iter(ds)
    n_examples = count_examples(spec)
    warm = warmup + (-(-n_examples * patches_per_image // batch_size) if cache else 0)  # fill the cache
    for _ in range(warm):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        x, y = next(it)
    _ = float(y[0, 0, 0, 0])  # make sure the last batch is materialised
    seconds = time.perf_counter() - start
    return {"cache": bool(cache), "patches_per_image": patches_per_image, "batches": batches,
            "batch_size": batch_size, "patch_size": patch_size, "seconds": round(seconds, 4),
            "pairs_per_second": round(batches * batch_size / seconds, 2)}


def make_paired_folder(dng_dir: pathlib.Path, out: pathlib.Path) -> str:
    """Links to the DNGs of ``dng_dir`` plus their classical renders as 8-bit PNGs; returns the spec."""
    import imageio.v3 as iio
    import numpy as np

    from isp_tf.raw import read_raw, render_classical

    for dng in sorted(dng_dir.glob("*.dng")):
        (out / dng.name).symlink_to(dng.resolve())
        render = render_classical(read_raw(dng))
        iio.imwrite(out / f"{dng.stem}.png", np.round(render * 255).astype(np.uint8))
    return f"paired:{out}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--spec", default=f"rendered:{REPO / 'sample_RAW_photos'}",
                        help="dataset spec(s), comma separated (see isp_tf.data.layouts)")
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per uncached configuration")
    parser.add_argument("--cached-batches", type=int, default=200, help="timed batches with the cache")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--patches-per-image", type=int, nargs="+", default=[1, 8],
                        help="crops per decoded image to measure (uncached runs)")
    parser.add_argument("--paired", action="store_true",
                        help="measure DNG + PNG pairs made from the sample DNGs instead of render targets")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if min(args.batches, args.cached_batches, args.batch_size) < 1 or args.warmup < 0:
        parser.error("--batches, --cached-batches and --batch-size must be positive, --warmup >= 0")
    if min(args.patches_per_image) < 1:
        parser.error("--patches-per-image must be positive")

    from isp_tf.errors import IspTfError
    from isp_tf.utils import atomic_write

    specs = [s for s in args.spec.split(",") if s]
    tmp = None
    try:
        if args.paired:
            tmp = tempfile.TemporaryDirectory(prefix="isp_tf_paired_")
            specs = [make_paired_folder(REPO / "sample_RAW_photos", pathlib.Path(tmp.name))]
        from tqdm import tqdm
        configs = [(False, k) for k in args.patches_per_image] + [(True, 1)]
        rows = [measure(specs, cache, args.patch_size, args.batch_size,
                        args.cached_batches if cache else args.batches, args.warmup, k)
                for cache, k in tqdm(configs, desc="configurations")]
    except IspTfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if tmp is not None:
            tmp.cleanup()
    result = {"spec": specs, "cpu_count": os.cpu_count(), "machine": platform.machine(),
              "python": platform.python_version(), "results": rows}
    print(f"\n{args.patch_size}x{args.patch_size} pairs from {', '.join(specs)} "
          f"(batch {args.batch_size}, {os.cpu_count()} CPUs)\n")
    print("| cache | patches per decoded image | pairs/s | timed batches | seconds |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {'on' if r['cache'] else 'off'} | {r['patches_per_image']} | {r['pairs_per_second']:.1f} "
              f"| {r['batches']} | {r['seconds']:.2f} |")
    if args.json:
        with atomic_write(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
