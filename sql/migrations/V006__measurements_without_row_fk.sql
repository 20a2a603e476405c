-- lumos-ops schema, version 6: lumos.measurements.exposure_id without a per-row foreign key.
--
-- The foreign key's per-row check was the largest server cost of the bulk write (about 45 ms of
-- 80 ms server CPU per exposure of 10,000 LUMOS rows; benchmarks/bench_ingest.py). The writer
-- checks and locks the exposure's row in the same transaction as its COPY, and the writer role
-- cannot delete exposures (V004), so the reference stays valid, as for run_id and model_version
-- (V001). The ON DELETE CASCADE the key carried becomes a statement-level trigger: deleting
-- exposures (the schema owner's clean-up) still deletes their measurements.

ALTER TABLE lumos.measurements DROP CONSTRAINT IF EXISTS measurements_exposure_id_fkey;

CREATE FUNCTION lumos.delete_measurements_of_deleted_exposures() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM lumos.measurements AS m USING gone WHERE m.exposure_id = gone.exposure_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER exposures_delete_measurements
AFTER DELETE ON lumos.exposures
REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION lumos.delete_measurements_of_deleted_exposures();
