"""Stage 2, analysis: what the graph is, before anything runs.

- :mod:`~ranp_onnx.analysis.shapes`: every tensor's concrete shape (``analyse``), with
  :mod:`~ranp_onnx.analysis.shape_inference` running ONNX shape inference node by node;
- :mod:`~ranp_onnx.analysis.channels`: the channel groups that must be pruned together;
- :mod:`~ranp_onnx.analysis.costs`: parameters, MACs, FLOPs and activation memory.
"""
