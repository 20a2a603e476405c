"""I/O layer of the nightly pipeline: object storage, PostgreSQL, and the night's processing steps.

Modules (import what you need from each; there is no facade):

* ``config``         validated settings dataclasses (storage, database, night processing);
* ``keys``           object-key template, key validation and parsing;
* ``storage``        local-directory and S3 object stores with a checksum-keyed download cache;
* ``local_postgres`` a throwaway PostgreSQL server for tests, the demo and benchmarks;
* ``database``       engines and the versioned SQL migrations of ``sql/migrations``;
* ``writer``         COPY-into-staging + replace writer, one transaction per exposure;
* ``plan``           the neutral plan (plain dataclasses) passed between Airflow tasks;
* ``night``          discover + register, process one exposure, ``run_night`` (no Airflow);
* ``coadd``          eq. (21) and PDF co-adds in the database;
* ``report``         the night report (counts, failures, timings, PNG plots) in object storage;
* ``queries``        the example SQL queries of ``sql/queries``.

Nothing here imports Airflow; ``lumos_ops.airflow`` wraps these functions in hooks and tasks.
"""

__all__: list[str] = []
