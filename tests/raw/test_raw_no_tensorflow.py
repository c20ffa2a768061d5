"""isp_tf.raw is numpy only: using all of it never imports TensorFlow or Keras."""
import subprocess
import sys
import textwrap


def test_raw_imports_no_tensorflow(raw_samples, repo_root, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        import isp_tf.raw as r
        raw = r.read_raw({str(raw_samples["crw"])!r})
        r.render_classical(raw, align_to_packed=True)
        r.pack_bayer(raw)
        r.write_dng({str(tmp_path / "x.dng")!r}, raw.bayer[:64, :64], raw)
        r.read_bayer_array({str(raw_samples["nikon_raw"])!r}, shape=(512, 768),
                           cfa_pattern="RGGB", black_level=600, white_level=15520)
        heavy = sorted(m for m in sys.modules
                       if m.split(".")[0] in ("tensorflow", "tf_keras", "keras", "jax", "torch"))
        print(heavy)
        sys.exit(1 if heavy else 0)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "[]"
