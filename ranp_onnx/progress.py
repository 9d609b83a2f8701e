"""Progress reports: the callback long stages call, and nothing else.

A stage that runs long (scoring passes, budget bisections) takes an optional
:data:`Progress` and calls it after each step with (steps done, steps in total or None).
The library never prints; the CLI renders the calls as a progress bar on stderr
(:func:`ranp_onnx.cli.options.progress_bar`).
"""

from __future__ import annotations

from collections.abc import Callable

#: Called after each step with (steps done, steps in total or None if unknown).
Progress = Callable[[int, int | None], None]
