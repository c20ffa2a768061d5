"""GenISP (arXiv 2205.03688): a RAW-to-RGB ISP trained through a frozen object detector."""
