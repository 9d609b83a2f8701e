"""How a batch of scoring data runs through a graph: in one pass, or in micro-batches.

A model is analysed at one batch (its static batch, or the batch a dynamic one was given).
A batch of another size runs in one pass where every tensor follows the batch
(:func:`~ranp_onnx.analysis.batch.batch_fixer` finds none that does not). Where a node fixes
the batch (a Reshape to ``[1, 1536]`` from torch's dynamo exporter, say), the batch is split
into micro-batches of the analysed batch: each runs forward, the outputs are joined, and the
batch's loss is taken over the joined output, so one backward pass gives exactly the
gradient of one pass over the whole batch wherever nothing in the graph couples samples.
BatchNormalization with batch statistics couples them: it then sees micro-batches.
"""

from __future__ import annotations

from ..analysis.batch import BatchFixer, analysed_batch, batch_fixer
from ..errors import DataError
from ..ir.graph import GraphAnalysis
from ..ops.normalization import OneValuePerChannelError


class MicroBatches:
    """Decides the samples per forward pass for each batch size (one analysis per size).

    Args:
        graph: The analysed model.
    """

    def __init__(self, graph: GraphAnalysis) -> None:
        self.graph = graph
        self.analysed = analysed_batch(graph)
        self._fixers: dict[int, BatchFixer | None] = {}

    def fixer(self, size: int) -> BatchFixer | None:
        """The node that does not follow the batch to ``size``, or None."""
        if size not in self._fixers:
            self._fixers[size] = batch_fixer(self.graph, size)
        return self._fixers[size]

    def chunk(self, size: int, number: int) -> int:
        """Samples per forward pass for batch ``number`` (from 1) of ``size`` samples.

        Raises:
            DataError: The graph runs only at its analysed batch and ``size`` is not a
                multiple of it; the message names the node and what works.
        """
        analysed = self.analysed
        if analysed is None or size == analysed:
            return size
        fixer = self.fixer(size)
        if fixer is None:
            return size
        if size % analysed:
            raise DataError(
                f"batch {number} has {size} samples, which do not split into batches of "
                f"{analysed}, the only batch the model runs at ({fixer.describe()}): score "
                f"with a `batch_size` that is a multiple of {analysed}, or export the model "
                "with a dynamic batch"
            )
        return analysed

    def one_value_per_channel(self, error: OneValuePerChannelError, size: int) -> DataError:
        """The error for a BatchNormalization that sees one value per channel, with advice."""
        problem = (
            f"node '{error.node}' (BatchNormalization) sees one value per channel (input "
            f"{list(error.shape)}): batch statistics are undefined"
        )
        analysed = self.analysed or 1
        fixer = self.fixer(max(size, 2 * analysed))
        if fixer is None:
            return DataError(
                f"{problem}; score with `batch_size` 2 or more, or `batchnorm` running"
            )
        return DataError(
            f"{problem}, and the model runs in batches of {analysed} only ({fixer.describe()}): "
            "score with `batchnorm` running, or export the model with a dynamic batch "
            "(or at batch 2 or more)"
        )
