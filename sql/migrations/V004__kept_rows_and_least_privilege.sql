-- lumos-ops schema, version 4: a failure never deletes measurements; least privilege for the writer.
--
-- Measurements are only ever replaced by a later successful write of the same exposure. An
-- exposure whose latest attempt failed (or was interrupted) keeps the rows of its last successful
-- write: they are "stale" (status <> 'done' while measured_run_id is set), and co-adds built on
-- them count them in n_stale and are partial.

ALTER TABLE lumos.exposures
    ADD COLUMN measured_run_id bigint REFERENCES lumos.pipeline_runs (run_id),
    ADD COLUMN measured_at     timestamptz,
    ADD COLUMN attempts        integer NOT NULL DEFAULT 0,
    ADD COLUMN worker          text;
COMMENT ON COLUMN lumos.exposures.measured_run_id IS
    'run whose successful write produced the measurements stored for this exposure (NULL: none stored)';
COMMENT ON COLUMN lumos.exposures.worker IS 'host:pid of the task that last marked the exposure running';

UPDATE lumos.exposures AS e
SET measured_run_id = e.run_id, measured_at = e.finished_at
WHERE e.status = 'done';

ALTER TABLE lumos.coadds
    ADD COLUMN n_stale integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN lumos.coadds.n_stale IS
    'exposures co-added with rows of an earlier successful write because their latest attempt did not succeed';

-- Per exposure: whether its stored rows are current, stale or absent.
CREATE VIEW lumos.exposure_rows AS
SELECT e.exposure_id, e.object_key, e.night, e.expnum, e.ccd, e.band, e.status, e.error, e.run_id,
       e.measured_run_id, e.measured_at, e.n_measurements, e.attempts,
       CASE WHEN e.measured_run_id IS NULL THEN 'none'
            WHEN e.status = 'done' THEN 'current'
            ELSE 'stale' END AS rows_state
FROM lumos.exposures AS e;

-- The night summary gains the exposures whose rows are stale.
CREATE OR REPLACE VIEW lumos.night_summary AS
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
       max(e.finished_at)                              AS last_finished,
       count(*) FILTER (WHERE e.status <> 'done' AND e.measured_run_id IS NOT NULL) AS n_stale
FROM lumos.exposures AS e
GROUP BY e.night;

CREATE OR REPLACE VIEW lumos.latest_coadds AS
SELECT DISTINCT ON (c.ref_id, c.band, c.method)
       c.ref_id, c.band, c.method, c.model_version, c.flux_njy, c.flux_err_njy,
       c.flux_median_njy, c.flux_peak_njy, c.sigma68_njy, c.sigma95_njy, c.eta,
       c.n_exposures, c.n_used, c.flag, c.partial, c.last_night, c.updated_at, c.run_id, c.n_stale
FROM lumos.coadds AS c
ORDER BY c.ref_id, c.band, c.method, c.updated_at DESC, c.model_version DESC;

GRANT SELECT ON lumos.exposure_rows TO lumos_reader, lumos_writer;

-- Least privilege: the pipeline writes measurements, co-adds, exposures and runs; it never
-- deletes exposures, co-adds, catalogue rows or runs, and a registered model version is immutable
-- for it (new versions may be inserted; promotion goes through its own command).
REVOKE DELETE ON lumos.exposures, lumos.coadds, lumos.catalog_sources FROM lumos_writer;
REVOKE UPDATE, DELETE ON lumos.model_versions FROM lumos_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA lumos REVOKE DELETE ON TABLES FROM lumos_writer;
