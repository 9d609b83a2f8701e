"""Benchmarks of ranp-onnx: ``make bench`` (``python -m benchmarks.run``) writes RESULTS.md."""
