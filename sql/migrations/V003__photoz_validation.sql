-- lumos-ops schema, version 3: results of the periodic photo-z validation (lumos_photoz_validation DAG).
-- One row per check and photometry method: template-fitting photo-z of the latest co-adds against the
-- catalogue's spectroscopic redshifts, dz = (z_phot - z_spec) / (1 + z_spec).

CREATE TABLE lumos.photoz_checks (
    check_id         bigserial   PRIMARY KEY,
    checked_at       timestamptz NOT NULL DEFAULT now(),
    dag_run_id       text        NOT NULL,
    method           text        NOT NULL,
    model_versions   text[]      NOT NULL,
    n_sources        integer     NOT NULL,
    n_fitted         integer     NOT NULL,
    n_bands_median   real,
    sigma68          double precision,
    nmad             double precision,
    outlier_fraction double precision,
    bias             double precision,
    outlier_threshold double precision NOT NULL,
    metrics          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    report_key       text
);
CREATE INDEX photoz_checks_method_idx ON lumos.photoz_checks (method, checked_at DESC);

GRANT SELECT ON lumos.photoz_checks TO lumos_reader;
GRANT SELECT, INSERT ON lumos.photoz_checks TO lumos_writer;
GRANT USAGE, SELECT ON SEQUENCE lumos.photoz_checks_check_id_seq TO lumos_writer;
