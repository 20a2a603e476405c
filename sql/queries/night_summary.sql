-- Exposures, failures, measurements and time spent for the most recent nights.
-- Parameter: :limit (number of nights)
SELECT night, n_exposures, n_done, n_failed, n_measurements, n_bands,
       round(mean_psf_fwhm::numeric, 2) AS mean_psf_fwhm_arcsec,
       round((coalesce(download_s, 0) + coalesce(measure_s, 0) + coalesce(write_s, 0))::numeric, 1) AS busy_s
FROM lumos.night_summary
ORDER BY night DESC
LIMIT :limit;
