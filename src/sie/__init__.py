"""sie: self-supervised learning of split invariant-equivariant representations.

The public API is re-exported here as the stages land; see README.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
