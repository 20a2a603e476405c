-- Every measurement of a source with the exposure, model version and pipeline run it came from.
-- Parameter: :ref_id
SELECT m.method, m.model_version, e.night, e.expnum, e.ccd, e.band, e.object_key, e.checksum,
       m.flux, m.flux_err, m.flag, r.dag_id, r.dag_run_id, r.code_version
FROM lumos.measurements AS m
JOIN lumos.exposures AS e ON e.exposure_id = m.exposure_id
JOIN lumos.pipeline_runs AS r ON r.run_id = m.run_id
WHERE m.ref_id = :ref_id
ORDER BY e.night, e.expnum, e.ccd, m.method;
