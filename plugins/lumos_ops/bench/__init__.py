"""Evidence for the photometry methods: accuracy metrics (paper §5.2) and benchmark reports."""

__all__: list[str] = []
