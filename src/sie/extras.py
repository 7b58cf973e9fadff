"""Optional dependencies (``pip install 'sie[EXTRA]'``), checked before the work that needs them starts."""

from __future__ import annotations

import importlib.util

from sie.errors import UsageError

__all__ = ["require_extra"]


def require_extra(module: str, extra: str, needed_by: str) -> None:
    """Raise a one-line :class:`UsageError` naming the extra when ``module`` cannot be imported.

    Args:
        module: the top-level module to look for, e.g. ``"matplotlib"``.
        extra: the extra of the ``sie`` distribution that installs it, e.g. ``"report"``.
        needed_by: what needs it, for the message, e.g. ``"sie report"``.
    """
    if importlib.util.find_spec(module) is None:
        raise UsageError(
            f"{needed_by} needs {module}, which is not installed: pip install 'sie[{extra}]' "
            f"(or `make install`, which installs the extras)"
        )
