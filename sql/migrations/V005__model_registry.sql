-- lumos-ops schema, version 5: a model registry that decides (docs/registry.md).
--
-- Every version in lumos.model_versions has a status: 'candidate' (registered, not run by the
-- nightly pipeline unless an operator overrides it), 'production' (at most one per method: what
-- lumos_nightly runs and what lumos.latest_coadds shows) or 'retired' (was production; a rollback
-- target). Promotion (`lumos model promote`, lumos_ops.pipeline.registry) checks the candidate's
-- injection report against the production version's under configurable gates; promotions,
-- rejections, rollbacks, reports and registrations are recorded in the append-only
-- lumos.model_events.
--
-- Who may change a status: the schema owner (the role that runs `lumos db upgrade` and owns these
-- tables), or a login the owner explicitly grants UPDATE on lumos.model_versions and INSERT on
-- lumos.model_events. The pipeline's lumos_writer may only INSERT new versions, and not their
-- status, report or gate result (column privileges below): a new version gets its status from
-- the trigger lumos.model_versions_initial_status, so the pipeline cannot make anything production.

ALTER TABLE lumos.model_versions
    ADD COLUMN status           text CHECK (status IN ('candidate', 'production', 'retired')),
    ADD COLUMN object_key       text,
    ADD COLUMN injection_report jsonb,
    ADD COLUMN gate_result      jsonb;
COMMENT ON COLUMN lumos.model_versions.status IS
    'candidate | production (at most one per method; what lumos_nightly runs) | retired (was production)';
COMMENT ON COLUMN lumos.model_versions.object_key IS
    'object-store key of the checkpoint (NULL: classical method or a checkpoint shipped with lumos-ops)';
COMMENT ON COLUMN lumos.model_versions.injection_report IS
    'injection-recovery report (lumos inject: injection_report.json) the promotion gates read';
COMMENT ON COLUMN lumos.model_versions.gate_result IS
    'outcome of the last promotion attempt: passed, reasons, every check, gates, production compared against';

-- Backfill. Checkpoints of retrained candidates: retrain.py recorded their key in metadata.
UPDATE lumos.model_versions
SET object_key = metadata->>'object_key'
WHERE kind = 'lumos' AND metadata ? 'object_key' AND metadata->>'object_key' <> '';

-- Statuses of the existing versions, per method:
--   * metadata.status = 'candidate' (registered by lumos_retrain) and no co-adds: candidate. One
--     with co-adds was run nightly through LUMOS_MODEL_KEY / LUMOS_MODEL_VERSIONS (how a candidate
--     was promoted before this registry) and is ranked with the others;
--   * of the others, the one whose co-adds were updated most recently (co-adds are rebuilt from the
--     measurements of every night, so this is the version the pipeline used last; ties and versions
--     without co-adds: the latest registered) is production. A method with a single such version
--     (the usual case: aperture-1, lumos-fast-v10) thus gets it as production;
--   * the others that have co-adds were production before: retired (rollback targets);
--   * the others, never used: candidate.
WITH used AS (
    SELECT c.model_version, max(c.updated_at) AS last_used
    FROM lumos.coadds AS c
    GROUP BY c.model_version
), versions AS (
    SELECT mv.model_version, mv.method, mv.registered_at, u.last_used,
           coalesce(mv.metadata->>'status', '') = 'candidate' AND u.last_used IS NULL AS was_candidate
    FROM lumos.model_versions AS mv
    LEFT JOIN used AS u USING (model_version)
), ranked AS (
    SELECT v.model_version,
           row_number() OVER (PARTITION BY v.method
                              ORDER BY v.last_used DESC NULLS LAST, v.registered_at DESC, v.model_version DESC) AS rank
    FROM versions AS v
    WHERE NOT v.was_candidate
)
UPDATE lumos.model_versions AS mv
SET status = CASE
        WHEN v.was_candidate THEN 'candidate'
        WHEN r.rank = 1 THEN 'production'
        WHEN v.last_used IS NOT NULL THEN 'retired'
        ELSE 'candidate'
    END
FROM versions AS v
LEFT JOIN ranked AS r USING (model_version)
WHERE mv.model_version = v.model_version;

ALTER TABLE lumos.model_versions ALTER COLUMN status SET NOT NULL;
CREATE UNIQUE INDEX model_versions_one_production ON lumos.model_versions (method) WHERE status = 'production';
CREATE INDEX model_versions_method_status_idx ON lumos.model_versions (method, status);

-- The status of a new version when the INSERT names none (the pipeline's writer cannot name one):
-- a classical version becomes production when its method has none yet (aperture-1 on the first
-- night), everything else (every LUMOS checkpoint, retrained or shipped) starts as candidate.
CREATE FUNCTION lumos.model_versions_initial_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS NULL THEN
        IF NEW.kind = 'classical' AND NOT EXISTS (
            SELECT 1 FROM lumos.model_versions AS p WHERE p.method = NEW.method AND p.status = 'production'
        ) THEN
            NEW.status := 'production';
        ELSE
            NEW.status := 'candidate';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER model_versions_initial_status
    BEFORE INSERT ON lumos.model_versions
    FOR EACH ROW EXECUTE FUNCTION lumos.model_versions_initial_status();

-- The registry's history: one row per registration, report, promotion, retirement, rejection and
-- rollback. Append-only for everyone (a trigger refuses UPDATE, DELETE and TRUNCATE).
CREATE TABLE lumos.model_events (
    event_id      bigserial   PRIMARY KEY,
    model_version text        NOT NULL REFERENCES lumos.model_versions (model_version),
    method        text        NOT NULL,
    action        text        NOT NULL
                  CHECK (action IN ('register', 'report', 'promote', 'retire', 'reject', 'rollback')),
    from_status   text        CHECK (from_status IN ('candidate', 'production', 'retired')),
    to_status     text        NOT NULL CHECK (to_status IN ('candidate', 'production', 'retired')),
    actor         text        NOT NULL DEFAULT current_user,
    reason        text,
    details       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    at            timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX model_events_method_idx ON lumos.model_events (method, at DESC, event_id DESC);
CREATE INDEX model_events_version_idx ON lumos.model_events (model_version, at DESC, event_id DESC);
COMMENT ON TABLE lumos.model_events IS
    'append-only history of lumos.model_versions: register, report, promote, retire, reject, rollback';

CREATE FUNCTION lumos.model_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
        MESSAGE = 'lumos.model_events is append-only (' || TG_OP || ' refused)';
END
$$;
CREATE TRIGGER model_events_append_only
    BEFORE UPDATE OR DELETE ON lumos.model_events
    FOR EACH ROW EXECUTE FUNCTION lumos.model_events_append_only();
CREATE TRIGGER model_events_no_truncate
    BEFORE TRUNCATE ON lumos.model_events
    FOR EACH STATEMENT EXECUTE FUNCTION lumos.model_events_append_only();

-- Backfilled statuses are recorded as registrations (a retired one is a rollback target).
INSERT INTO lumos.model_events (model_version, method, action, from_status, to_status, reason, at)
SELECT mv.model_version, mv.method, 'register', NULL, mv.status,
       'V005 backfill: status from metadata and co-add usage', now()
FROM lumos.model_versions AS mv
ORDER BY mv.method, mv.registered_at, mv.model_version;

-- Every later registration is recorded, whoever inserts it (the pipeline's writer may not insert
-- events itself): SECURITY DEFINER runs as the schema owner, actor is the login that inserted.
CREATE FUNCTION lumos.model_versions_registered() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO lumos.model_events (model_version, method, action, from_status, to_status, actor, details)
    VALUES (NEW.model_version, NEW.method, 'register', NULL, NEW.status, session_user,
            jsonb_build_object('kind', NEW.kind, 'checksum', NEW.checksum, 'object_key', NEW.object_key));
    RETURN NULL;
END
$$;
CREATE TRIGGER model_versions_registered
    AFTER INSERT ON lumos.model_versions
    FOR EACH ROW EXECUTE FUNCTION lumos.model_versions_registered();

-- Latest co-add per source, band and method as users should see it: for a method with a
-- production version, that version's co-add; where it has none yet for a source (a newly promoted
-- version has not reprocessed every source), the latest co-add of a retired version; never a
-- candidate's, so reprocessing with a candidate changes nothing here until it is promoted. A
-- method without any production version shows its latest co-add whatever its status (as before).
-- Columns as in V004, plus model_status.
CREATE OR REPLACE VIEW lumos.latest_coadds AS
SELECT DISTINCT ON (c.ref_id, c.band, c.method)
       c.ref_id, c.band, c.method, c.model_version, c.flux_njy, c.flux_err_njy,
       c.flux_median_njy, c.flux_peak_njy, c.sigma68_njy, c.sigma95_njy, c.eta,
       c.n_exposures, c.n_used, c.flag, c.partial, c.last_night, c.updated_at, c.run_id, c.n_stale,
       mv.status AS model_status
FROM lumos.coadds AS c
JOIN lumos.model_versions AS mv ON mv.model_version = c.model_version
WHERE mv.status <> 'candidate'
   OR NOT EXISTS (SELECT 1 FROM lumos.model_versions AS p WHERE p.method = c.method AND p.status = 'production')
ORDER BY c.ref_id, c.band, c.method, (mv.status = 'production') DESC, (mv.status = 'candidate'),
         c.updated_at DESC, c.model_version DESC;

-- Privileges. The writer inserts new versions (and their checkpoint key) but no status, report or
-- gate result, and changes nothing (V004 revoked UPDATE and DELETE); it reads the registry.
REVOKE INSERT ON lumos.model_versions FROM lumos_writer;
GRANT INSERT (model_version, method, kind, checksum, metadata, registered_at, object_key)
    ON lumos.model_versions TO lumos_writer;
REVOKE ALL ON lumos.model_events FROM lumos_writer, lumos_reader;
REVOKE ALL ON SEQUENCE lumos.model_events_event_id_seq FROM lumos_writer, lumos_reader;
GRANT SELECT ON lumos.model_events TO lumos_writer, lumos_reader;
GRANT SELECT ON lumos.latest_coadds TO lumos_writer, lumos_reader;
