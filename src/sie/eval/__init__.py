"""Offline evaluation of a trained run: features once, probes, retrieval, results.json and reports.

``sie.eval.evaluate(run_dir, data_root, cfg) -> Path`` runs the protocol (``sie.eval.run``);
``sie.eval.report.write_report(run_dirs, out_dir)`` writes the report; the metrics are pure functions
in ``sie.eval.metrics``. ``evaluate`` is imported on first use, so that importing the light modules
(metrics, probes), as the training loop's online probes do, does not pull in the data and model stack.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate"]


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from sie.eval.run import evaluate

        return evaluate
    raise AttributeError(f"module 'sie.eval' has no attribute {name!r}")
