-- lumos-ops schema, version 10: a version registered by a reprocessing run starts as a candidate.
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
