"""Thin Airflow layer: hooks over the providers' S3Hook/PostgresHook, one operator, the plugin.

Only Airflow processes import this package; the work is done by ``lumos_ops.pipeline``.
"""

__all__: list[str] = []
