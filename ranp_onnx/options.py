"""The options of ``prune``: one record for callers, one group per stage for the stages.

Each stage declares its own options (:class:`~ranp_onnx.scoring.options.ScoringOptions`,
:class:`~ranp_onnx.selection.options.SelectionOptions`,
:class:`~ranp_onnx.rewrite.options.RewriteOptions`, where every field is documented).
:class:`PruneOptions` is all of them in one flat record, the one Python users and the CLI
set; the pipeline hands each stage only its own group (:attr:`PruneOptions.scoring`,
:attr:`PruneOptions.selection`, :attr:`PruneOptions.rewrite`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from .rewrite.options import RewriteOptions
from .scoring.options import ScoringOptions
from .selection.options import SelectionOptions
from .selection.search import check_selection

GroupT = TypeVar("GroupT")


@dataclass(frozen=True)
class PruneOptions(SelectionOptions, ScoringOptions, RewriteOptions):
    """Everything ``ranp-onnx prune`` can be told: the fields of the three stage groups.

    ``seed`` serves the selection (the random criterion, zero-score ties) and the
    re-initialisation; ``device`` the scoring passes and the oracle.
    """

    @property
    def scoring(self) -> ScoringOptions:
        """The scoring stage's options."""
        return _group(ScoringOptions, self)

    @property
    def selection(self) -> SelectionOptions:
        """The selection stage's options."""
        return _group(SelectionOptions, self)

    @property
    def rewrite(self) -> RewriteOptions:
        """The rewrite stage's options."""
        return _group(RewriteOptions, self)

    def settings(self) -> dict[str, Any]:
        """The options as plain JSON data, for plans."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


def _group(group: type[GroupT], options: PruneOptions) -> GroupT:
    """The fields of one stage's group, copied from the flat record."""
    fields = dataclasses.fields(group)  # type: ignore[arg-type]
    return group(**{field.name: getattr(options, field.name) for field in fields})


def check_options(options: PruneOptions) -> None:
    """Refuse options that contradict each other or are out of range.

    Raises:
        PlanError: Zero or several of sparsity / target_flops / target_memory, a value
            out of range, or an unknown method; the message names the parameter.
    """
    check_selection(options.selection)
