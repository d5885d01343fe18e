"""Task heads beyond sequence classification (which lives in ``thawkit.api``)."""
