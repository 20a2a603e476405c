"""Scoring photometry against known truth: fixed-truth metrics and injection-recovery on real frames."""
