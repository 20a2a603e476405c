-- lumos-ops schema, version 10: a version registered by a reprocessing run starts as a candidate,
-- and lumos.latest_coadds leaves it out until it is promoted.
--
-- V005 made a new classical version production when its method had none, so that aperture-1 is
-- production after the first night. A reprocessing run of a method the nightly does not measure
-- (say optimal=optimal-7) then made its version production at once, and lumos.latest_coadds
-- changed before anyone promoted it. A transaction that sets lumos.new_versions to 'candidate'
-- (SET LOCAL, as lumos_ops.pipeline.writer.register_model_versions does for reprocessing)
-- registers every new version as a candidate; anything else behaves as V005 said.

CREATE OR REPLACE FUNCTION lumos.model_versions_initial_status() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS NULL THEN
        IF NEW.kind = 'classical'
           AND coalesce(current_setting('lumos.new_versions', true), '') <> 'candidate'
           AND NOT EXISTS (
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

-- lumos.latest_coadds showed a method's candidates when it had no production version (V005: the
-- shipped LUMOS default is a candidate on a fresh database), a reprocessing run's candidate among
-- them. Versions registered by a reprocessing run (metadata registered_by = 'reprocess') are left
-- out until they are promoted. Same columns and order as V005's view.
CREATE OR REPLACE VIEW lumos.latest_coadds AS
SELECT DISTINCT ON (c.ref_id, c.band, c.method)
       c.ref_id, c.band, c.method, c.model_version, c.flux_njy, c.flux_err_njy,
       c.flux_median_njy, c.flux_peak_njy, c.sigma68_njy, c.sigma95_njy, c.eta,
       c.n_exposures, c.n_used, c.flag, c.partial, c.last_night, c.updated_at, c.run_id, c.n_stale,
       mv.status AS model_status
FROM lumos.coadds AS c
JOIN lumos.model_versions AS mv ON mv.model_version = c.model_version
WHERE (mv.status <> 'candidate'
       OR NOT EXISTS (SELECT 1 FROM lumos.model_versions AS p WHERE p.method = c.method AND p.status = 'production'))
  AND NOT (mv.status = 'candidate' AND coalesce(mv.metadata ->> 'registered_by', '') = 'reprocess')
ORDER BY c.ref_id, c.band, c.method, (mv.status = 'production') DESC, (mv.status = 'candidate'),
         c.updated_at DESC, c.model_version DESC;
