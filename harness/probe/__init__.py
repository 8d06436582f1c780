"""The probe: runs inside a team's container (or subprocess), never sees gold labels.

Imports only the standard library, torch and numpy (onnx lazily): no click, pandas or docker, so that a
team image needs nothing beyond what the runner image carries. Entry point: ``python -m harness.probe``.
"""
