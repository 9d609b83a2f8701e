"""Stage 6, reporting: what a user reads and checks.

- :mod:`~ranp_onnx.reporting.tables`: cost tables, comparisons and their JSON;
- :mod:`~ranp_onnx.reporting.explain`: why each layer can or cannot be pruned;
- :mod:`~ranp_onnx.reporting.profiling`: latency and time by op in onnxruntime;
- :mod:`~ranp_onnx.reporting.deploy`: the model in onnxruntime or OpenVINO;
- :mod:`~ranp_onnx.reporting.plots`: the paper's figures (matplotlib, imported lazily).
"""
