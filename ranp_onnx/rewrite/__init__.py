"""Stage 5, rewrite: the physically smaller model, and the proof that it is exact.

- :mod:`~ranp_onnx.rewrite.surgery`: the only code that edits initializers
  (onnx-graphsurgeon);
- :mod:`~ranp_onnx.rewrite.oracle`: the pruned model against the masked original;
- :mod:`~ranp_onnx.rewrite.reinit`: re-initialisation before training from scratch.
"""
