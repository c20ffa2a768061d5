#!/usr/bin/env python3
"""Would every op of a .tflite run under the Android NNAPI delegate at API 29 (NNAPI 1.2)?

The command lives in the library as ``python -m isp_tf.export.check_nnapi``; this file is the
documented entry point and runs it unchanged (``python export/check_nnapi.py --help``).
"""
import sys

from isp_tf.export.check_nnapi import main

if __name__ == "__main__":
    sys.exit(main())
