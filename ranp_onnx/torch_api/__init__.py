"""PyTorch first: the round trip to torch modules and pruning a user's own module.

- :mod:`~ranp_onnx.torch_api.round_trip`: ``to_torch`` / ``to_onnx``;
- :mod:`~ranp_onnx.torch_api.prune_module`: ``prune_module``, with
  :mod:`~ranp_onnx.torch_api.shrink` shrinking the user's layers in place;
- :mod:`~ranp_onnx.torch_api.export`: exporting a torch module the way pruning needs.

Every module here imports torch; ``import ranp_onnx`` does not.
"""
