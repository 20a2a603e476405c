-- lumos-ops schema, version 1: exposures, catalogue, measurements, co-adds, model registry, runs.
-- Applied once by `lumos db upgrade` (lumos_ops.pipeline.database.upgrade) inside a transaction.
-- Fluxes: measurements in e-/s (per exposure); co-adds in nJy (f_nJy = f * 10**(-0.4 * (ZP - 31.4))).

CREATE SCHEMA IF NOT EXISTS lumos;

-- Provenance of every write: one row per DAG run (or CLI run) and night.
CREATE TABLE lumos.pipeline_runs (
    run_id        bigserial PRIMARY KEY,
    dag_id        text        NOT NULL,
    dag_run_id    text        NOT NULL,
    night         date        NOT NULL,
    code_version  text        NOT NULL,
    settings      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    status        text        NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'success', 'partial', 'failed', 'empty')),
    UNIQUE (dag_id, dag_run_id, night)
);

-- Model registry: classical methods use "<method>-<n>" (e.g. aperture-1); LUMOS uses the
-- checkpoint's version string and stores its metadata (training set, checksum, preprocessing).
CREATE TABLE lumos.model_versions (
    model_version text        PRIMARY KEY CHECK (model_version ~ '^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$'),
    method        text        NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('classical', 'lumos')),
    checksum      text,
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    registered_at timestamptz NOT NULL DEFAULT now()
);

-- The external (detection) catalogue photometry is forced on.
CREATE TABLE lumos.catalog_sources (
    ref_id    bigint PRIMARY KEY,
    ra        double precision,
    dec       double precision,
    x         double precision,
    y         double precision,
    r50       real NOT NULL,
    sersic_n  real NOT NULL,
    q         real NOT NULL,
    pa        real NOT NULL,
    i_auto    real NOT NULL,
    zspec     real,
    catalog_checksum text NOT NULL,
    loaded_at timestamptz NOT NULL DEFAULT now()
);

-- One row per CCD image.
CREATE TABLE lumos.exposures (
    exposure_id    bigserial PRIMARY KEY,
    object_key     text        NOT NULL UNIQUE,
    checksum       text,
    size_bytes     bigint,
    night          date        NOT NULL,
    expnum         integer     NOT NULL,
    ccd            smallint    NOT NULL,
    band           text,
    epoch          smallint,
    exptime        real,
    psf_fwhm       real,
    zero_point     double precision,
    mjd            double precision,
    nan_fraction   real,
    status         text        NOT NULL DEFAULT 'registered'
                   CHECK (status IN ('registered', 'running', 'done', 'failed')),
    error          text,
    run_id         bigint REFERENCES lumos.pipeline_runs (run_id),
    n_measurements integer,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    download_s     real,
    measure_s      real,
    write_s        real,
    UNIQUE (night, expnum, ccd)
);
CREATE INDEX exposures_night_idx ON lumos.exposures (night, status);

-- Per-exposure forced photometry (source x exposure x method x model version).
-- mix_* hold the LUMOS Gaussian-mixture components (weights, means and sigmas in e-/s), NULL otherwise.
-- model_version and run_id are checked once per exposure write by the writer, not by per-row
-- foreign-key triggers (they halve the bulk-write rate); the writer role cannot delete runs or
-- model versions (V002), so the references stay valid.
CREATE TABLE lumos.measurements (
    exposure_id   bigint  NOT NULL REFERENCES lumos.exposures (exposure_id) ON DELETE CASCADE,
    ref_id        bigint  NOT NULL,
    method        text    NOT NULL,
    model_version text    NOT NULL,
    run_id        bigint  NOT NULL,
    band          text    NOT NULL,
    x             real,
    y             real,
    flux          double precision,
    flux_err      double precision,
    flag          integer NOT NULL DEFAULT 0,
    mix_alpha     real[],
    mix_mu        real[],
    mix_sigma     real[],
    extras        jsonb,
    PRIMARY KEY (exposure_id, ref_id, method, model_version)
);
CREATE INDEX measurements_source_idx ON lumos.measurements (ref_id, band, method, model_version);

-- Co-adds of every exposure of a source in a band (eq. 21 inverse-variance for point estimates,
-- PDF co-add for LUMOS). Fluxes in nJy.
CREATE TABLE lumos.coadds (
    ref_id        bigint  NOT NULL,
    band          text    NOT NULL,
    method        text    NOT NULL,
    model_version text    NOT NULL REFERENCES lumos.model_versions (model_version),
    run_id        bigint  NOT NULL REFERENCES lumos.pipeline_runs (run_id),
    n_exposures   integer NOT NULL,
    n_used        integer NOT NULL,
    flux_njy      double precision,
    flux_err_njy  double precision,
    flux_median_njy double precision,
    flux_peak_njy   double precision,
    sigma68_njy   double precision,
    sigma95_njy   double precision,
    eta           double precision,
    chi2_dof      double precision,
    flag          integer NOT NULL DEFAULT 0,
    partial       boolean NOT NULL DEFAULT false,
    last_night    date    NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ref_id, band, method, model_version)
);
CREATE INDEX coadds_updated_idx ON lumos.coadds (ref_id, band, method, updated_at DESC);
