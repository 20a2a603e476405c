-- Median signal-to-noise of the co-adds per band and method, brightest catalogue sources first.
-- Parameter: :max_i_auto (AB mag)
SELECT c.band, c.method, count(*) AS n_sources,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY c.flux_njy / nullif(c.flux_err_njy, 0)) AS median_snr
FROM lumos.latest_coadds AS c
JOIN lumos.catalog_sources AS s ON s.ref_id = c.ref_id
WHERE s.i_auto <= :max_i_auto
GROUP BY c.band, c.method
ORDER BY c.band, c.method;
