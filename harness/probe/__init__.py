"""The worker side: runs next to team code (in its container or subprocess), never sees gold labels.

Imports only the standard library, torch and numpy (onnx lazily): no click, pandas or docker, so that a
team image needs nothing beyond what the runner image carries. Of the harness it imports only the modules
both sides share (harness.precision, harness.cpusets, harness.crosscheck's weight-file rule), never a
host module (the layers: README, Layout). Entry point: ``python -m harness.probe.worker``.
It does no timing and writes no files: the host's timekeeper does both.
"""
