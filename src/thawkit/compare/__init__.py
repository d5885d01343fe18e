"""``thawkit compare`` and ``thawkit report``: several strategies, same data and budget, one report."""

from thawkit.compare.runner import CompareConfig, Comparison, compare

__all__ = ["CompareConfig", "Comparison", "compare"]
