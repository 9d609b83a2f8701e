"""Stage 4, selection: from statistics to the channels kept, and the plan that records them.

- :mod:`~ranp_onnx.selection.importance`: the RANP steps and the baselines' scores (numpy);
- :mod:`~ranp_onnx.selection.criteria`: ``--method``, one registered criterion each;
- :mod:`~ranp_onnx.selection.constraints`: global top-k, per-group counts, and the
  constraints that always apply;
- :mod:`~ranp_onnx.selection.search`: a sparsity, a resource budget, Algorithm 2;
- :mod:`~ranp_onnx.selection.plan`: the plan as JSON-ready data.
"""
