#!/usr/bin/env python3
"""Export an isp_tf model to a fixed-shape .tflite that Android NNAPI 1.2 (API 29) delegates.

The command lives in the library as ``python -m isp_tf.export.__main__``; this file is the
documented entry point and runs it unchanged (``python export/export_to_tflite.py --help``).
"""
import sys

from isp_tf.export.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
