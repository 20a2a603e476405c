-- lumos-ops schema, version 2: the writer and reader roles, and views for common questions.
-- The roles are NOLOGIN groups: grant them to login users (`GRANT lumos_reader TO alice;`);
-- no password lives in this repository.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lumos_writer') THEN
        CREATE ROLE lumos_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lumos_reader') THEN
        CREATE ROLE lumos_reader NOLOGIN;
    END IF;
END
$$;

-- Latest co-add per source, band and method (the most recently updated model version).
CREATE VIEW lumos.latest_coadds AS
SELECT DISTINCT ON (c.ref_id, c.band, c.method)
       c.ref_id, c.band, c.method, c.model_version, c.flux_njy, c.flux_err_njy,
       c.flux_median_njy, c.flux_peak_njy, c.sigma68_njy, c.sigma95_njy, c.eta,
       c.n_exposures, c.n_used, c.flag, c.partial, c.last_night, c.updated_at, c.run_id
FROM lumos.coadds AS c
ORDER BY c.ref_id, c.band, c.method, c.updated_at DESC, c.model_version DESC;

-- One row per night: exposures by status, measurements written, timings.
CREATE VIEW lumos.night_summary AS
SELECT e.night,
       count(*)                                        AS n_exposures,
       count(*) FILTER (WHERE e.status = 'done')       AS n_done,
       count(*) FILTER (WHERE e.status = 'failed')     AS n_failed,
       count(*) FILTER (WHERE e.status NOT IN ('done', 'failed')) AS n_pending,
       count(DISTINCT e.band)                          AS n_bands,
       coalesce(sum(e.n_measurements), 0)              AS n_measurements,
       avg(e.psf_fwhm)                                 AS mean_psf_fwhm,
       sum(e.download_s)                               AS download_s,
       sum(e.measure_s)                                AS measure_s,
       sum(e.write_s)                                  AS write_s,
       min(e.started_at)                               AS first_started,
       max(e.finished_at)                              AS last_finished
FROM lumos.exposures AS e
GROUP BY e.night;

GRANT USAGE ON SCHEMA lumos TO lumos_writer, lumos_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA lumos TO lumos_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA lumos TO lumos_writer;
-- provenance is append-only for the pipeline: measurements refer to runs and model versions
REVOKE DELETE ON lumos.pipeline_runs, lumos.model_versions, lumos.schema_migrations FROM lumos_writer;
REVOKE INSERT, UPDATE ON lumos.schema_migrations FROM lumos_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA lumos TO lumos_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA lumos GRANT SELECT ON TABLES TO lumos_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA lumos GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO lumos_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA lumos GRANT USAGE, SELECT ON SEQUENCES TO lumos_writer;
