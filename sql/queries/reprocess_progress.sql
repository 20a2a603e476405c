-- Progress of a reprocessing: per night, the registered exposures and those holding rows of one
-- (method, model version), with the rows written so far.
-- Parameters: :method, :model_version
SELECT e.night,
       count(*)                                          AS n_exposures,
       count(*) FILTER (WHERE r.n_rows > 0)              AS n_done,
       coalesce(sum(r.n_rows), 0)                        AS n_rows
FROM lumos.exposures AS e
LEFT JOIN LATERAL (
    SELECT count(*) AS n_rows FROM lumos.measurements AS m
    WHERE m.exposure_id = e.exposure_id AND m.method = :method AND m.model_version = :model_version
) AS r ON true
GROUP BY e.night
HAVING count(*) FILTER (WHERE r.n_rows > 0) > 0
ORDER BY e.night;
