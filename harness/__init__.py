"""lightlm-harness: rerun light language models, measure them fairly, score them officially.

This module stays import-light on purpose: the probe imports ``harness`` inside team containers, where
click, pandas and docker may be absent.
"""

__version__ = "0.1.0"
