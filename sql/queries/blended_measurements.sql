-- Measurements of one night per band and method: how many had a catalogued neighbour fitted jointly
-- (flag 2048 BLENDED, docs/neighbours.md) and the median flux-variance factor of that fit.
-- Parameter: :night (YYYY-MM-DD)
SELECT m.band, m.method, count(*) AS n_measurements,
       count(*) FILTER (WHERE (m.flag & 2048) <> 0) AS n_blended,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY (m.extras ->> 'neighbour_variance')::double precision)
           FILTER (WHERE (m.flag & 2048) <> 0) AS median_blended_variance_factor
FROM lumos.measurements AS m
JOIN lumos.exposures AS e ON e.exposure_id = m.exposure_id
WHERE e.night = CAST(:night AS date)
GROUP BY m.band, m.method
ORDER BY m.band, m.method;
