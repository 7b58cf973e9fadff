"""Offline evaluation of a trained run: features once, probes, retrieval, results.json and reports."""
