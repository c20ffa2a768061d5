"""Write the project's sample DNGs: synthetic RAW photos made from bundled sRGB photos.

    python -m isp_tf.data.make_samples --out sample_RAW_photos

Each sample is a photo shipped inside scikit-image or matplotlib
(:mod:`isp_tf.data.photos`), upscaled (bicubic) to about one megapixel,
unprocessed into RAW (:func:`isp_tf.data.synthetic.synthesize`) with its own
Bayer pattern, sensor levels, colour matrix and ISO, and written with
:func:`isp_tf.raw.write_dng`. The same seed gives the same files, byte for
byte. A README.md listing the files is written beside them.
"""
from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys

import numpy as np

from isp_tf.errors import IspTfError

#: (photo, CFA pattern, (black, white), ISO): one of each pattern, a spread of sensors and noise.
SAMPLES = (
    ("astronaut", "RGGB", (512, 16383), 100),
    ("coffee", "GRBG", (1023, 15600), 400),
    ("rocket", "BGGR", (128, 4095), 1600),
    ("grace_hopper", "GBRG", (600, 15520), 3200),
)
COMMAND = "python -m isp_tf.data.make_samples --out sample_RAW_photos"


def upscale(image: np.ndarray, scale: float) -> np.ndarray:
    """Bicubic resize of an ``(H, W, 3)`` float image by ``scale`` (even output size)."""
    from skimage.transform import resize

    h, w = (int(round(s * scale)) // 2 * 2 for s in image.shape[:2])
    return np.clip(resize(image, (h, w), order=3, mode="reflect", anti_aliasing=scale < 1), 0.0, 1.0)


def make_samples(out, seed: int = 0, scale: float = 2.0, samples=SAMPLES, progress: bool = True) -> list:
    """Write one DNG per entry of ``samples`` into ``out``; returns the rows of the README table."""
    from tqdm import tqdm

    from isp_tf.data.photos import load_photo
    from isp_tf.data.synthetic import synthesize
    from isp_tf.raw import write_dng

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, pattern, levels, iso) in enumerate(tqdm(samples, desc="samples", disable=not progress)):
        photo = upscale(load_photo(name), scale)
        pair = synthesize(photo, seed=(seed, i), cfa_pattern=pattern, levels=levels, iso=iso)
        path = out / f"{name}.dng"
        write_dng(path, pair.raw.bayer, pair.raw)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        rows.append((path.name, f"{pair.raw.width}x{pair.raw.height}", pattern, f"{levels[0]}/{levels[1]}",
                     int(pair.raw.exif.iso), f"{pair.raw.wb_gains[0]:.3f}, 1, {pair.raw.wb_gains[2]:.3f}",
                     path.stat().st_size, digest))
    return rows


def readme_text(rows, seed: int, scale: float) -> str:
    from isp_tf.data.photos import PHOTO_CREDITS

    credits = "\n".join(f"- `{name}`: {PHOTO_CREDITS[name]}" for name, *_ in SAMPLES)
    table = "\n".join(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]:,} | `{r[7]}…` |"
                      for r in rows)
    total = sum(r[6] for r in rows)
    return f"""# Sample RAW photos

Synthetic DNGs that isp_tf writes itself; they are the input of the README's
main job. Each is a photo bundled with an installed package (scikit-image's
`astronaut`, `coffee`, `rocket`; matplotlib's `grace_hopper`), upscaled
{scale:g}x (bicubic) and unprocessed into a camera RAW as Brooks et al. 2019
do (inverse tone curve and gamma, random mix of real cameras' colour
matrices, inverse white balance, Bayer mosaic, shot and read noise matching
the ISO), then saved as an uncompressed 16-bit DNG with its black/white
levels, white balance (AsShotNeutral), ColorMatrix1 and EXIF. One file per
Bayer pattern, so a renderer that assumes RGGB shows wrong colours on three
of them.

Photo sources (as scikit-image and matplotlib document them):
{credits}

| file | size | CFA | black/white | ISO | WB gains (R, G, B) | bytes | sha256 |
|---|---|---|---|---|---|---|---|
{table}

{len(rows)} files, {total:,} bytes. Regenerate (seed {seed}; the same seed gives the same bytes):

```
{COMMAND}
```

The images are upscaled photos, not real sensor captures: their fine detail
is soft and their noise is synthetic. Real camera files for tests live in
`../shared/raw_samples` and are not copied here.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m isp_tf.data.make_samples",
        description="Write the sample DNGs (synthetic RAW from photos bundled with scikit-image "
                    "and matplotlib) and their README.md.")
    parser.add_argument("--out", default="sample_RAW_photos", help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--scale", type=float, default=2.0,
                        help="upscaling factor of the photos (default: %(default)s, about 1 MP each)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not 0.1 <= args.scale <= 8:
        parser.error("--scale must be between 0.1 and 8")
    try:
        rows = make_samples(args.out, seed=args.seed, scale=args.scale, progress=not args.quiet)
        from isp_tf.utils import atomic_write
        with atomic_write(pathlib.Path(args.out) / "README.md", "w") as f:
            f.write(readme_text(rows, args.seed, args.scale))
    except IspTfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(rows)} DNGs and README.md to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
