"""Stage 3, scoring: the loss gradient statistics every criterion reads.

- :mod:`~ranp_onnx.scoring.evaluator`: ``TorchGraph``, the ONNX graph evaluated op by op
  with torch (the gradients, and ``to_torch``);
- :mod:`~ranp_onnx.scoring.statistics`: the scoring passes and their running means;
- :mod:`~ranp_onnx.scoring.data`, :mod:`~ranp_onnx.scoring.sample_files`,
  :mod:`~ranp_onnx.scoring.module_data`: the scoring data (files, folders, random, a torch
  user's iterables);
- :mod:`~ranp_onnx.scoring.losses`: the scoring losses;
- :mod:`~ranp_onnx.scoring.memory`: the memory scoring needs, checked before it starts;
- :mod:`~ranp_onnx.scoring.distributed`: scoring under ``torchrun``.
"""
