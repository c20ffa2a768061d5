"""Every figure README.md states, and ``python -m isp_tf.figures --check`` that regenerates them.

* :mod:`isp_tf.figures.table`: the one table (stated value, tolerance, the
  README text that states it, how it is recomputed);
* :mod:`isp_tf.figures.measure`: the measurements, through the library's own
  evaluators and exporter;
* :mod:`isp_tf.figures.check`: the comparison (README text present, value
  within tolerance) behind the command.
"""
from isp_tf.figures.check import Row, check, readme_lines, within
from isp_tf.figures.table import FIGURES, Figure

__all__ = ["FIGURES", "Figure", "Row", "check", "readme_lines", "within"]
