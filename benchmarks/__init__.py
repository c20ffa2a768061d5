"""Latency and peak-RAM benchmarks of isp_tf's models (``python -m benchmarks.run --help``).

Modules: ``run`` (the command line and the orchestration), ``worker`` (one
configuration in a fresh process), ``measure`` (timing, RSS, GEMM peak),
``macs`` (MAC counts from a .tflite), ``tiled`` (exact tiled LiteRT
inference), ``merged`` (MicroISP with its branches merged), ``adb`` (phones),
``report`` (markdown and plot), ``scene`` (synthetic frames), ``config``
(frame sizes), ``models`` (building and exporting).  See benchmarks/README.md.
"""
