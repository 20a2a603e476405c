-- Exposures that failed in a night, with the error and the DAG run that tried them.
-- Parameter: :night (YYYY-MM-DD)
SELECT e.object_key, e.band, e.error, r.dag_id, r.dag_run_id, e.finished_at
FROM lumos.exposures AS e
LEFT JOIN lumos.pipeline_runs AS r ON r.run_id = e.run_id
WHERE e.night = CAST(:night AS date) AND e.status = 'failed'
ORDER BY e.object_key;
