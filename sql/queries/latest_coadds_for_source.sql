-- Latest co-added flux (nJy) and AB magnitude of one source in every band, per method.
-- Parameter: :ref_id
SELECT band, method, model_version, flux_njy, flux_err_njy,
       CASE WHEN flux_njy > 0 THEN 31.4 - 2.5 * log(flux_njy) END AS mag_ab,
       n_used, partial, last_night
FROM lumos.latest_coadds
WHERE ref_id = :ref_id
ORDER BY band, method;
