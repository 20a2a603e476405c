-- Photo-z checks of each method over time (lumos_photoz_validation DAG), newest first.
-- Parameter: :limit (rows)
SELECT checked_at, method, model_versions, n_fitted, n_sources, sigma68, nmad, outlier_fraction, bias, report_key
FROM lumos.photoz_checks
ORDER BY checked_at DESC, method
LIMIT CAST(:limit AS integer);
