"""The bottom layer: graph types, reading and writing models, the installed onnxruntime.

- :mod:`~ranp_onnx.ir.graph`: ``TensorInfo``, ``NodeInfo``, ``GraphAnalysis``, the element
  count and the float element types every stage shares;
- :mod:`~ranp_onnx.ir.load` / :mod:`~ranp_onnx.ir.save`: read a model safely, write one
  atomically;
- :mod:`~ranp_onnx.ir.normalize`: the ``Identity`` aliases of initializers, resolved once;
- :mod:`~ranp_onnx.ir.static`: values of static tensors;
- :mod:`~ranp_onnx.ir.runtime`: what the installed onnxruntime accepts, and sessions;
- :mod:`~ranp_onnx.ir.units`: byte units.

Nothing here imports anything above it.
"""
