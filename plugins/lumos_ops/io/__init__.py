"""Readers and writers for the data contracts of ``shared/GUIDE.md`` (exposures, catalogues,
measurement tables)."""
