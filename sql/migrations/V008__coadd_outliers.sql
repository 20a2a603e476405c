-- lumos-ops schema, version 8: how many exposures a LUMOS co-add discounted as bad.
--
-- The LUMOS co-add is the product of the exposures' likelihoods, each given a broad component of
-- the survey's coadd_outlier_fraction (the prior probability of a bad exposure: a cosmic ray, a
-- satellite trail, an artefact under that exposure only), so that one exposure far from the
-- others' consensus stops pulling it (docs/likelihood.md §3). n_outliers counts the exposures of
-- a co-add that are more likely bad than good at its median: 0 for a consistent set, NULL for the
-- eq. (21) co-adds of the classical methods and for co-adds written before this version.

ALTER TABLE lumos.coadds ADD COLUMN n_outliers integer;
COMMENT ON COLUMN lumos.coadds.n_outliers IS
    'LUMOS co-adds: exposures more likely bad than good at the co-add median (survey coadd_outlier_fraction); NULL for eq. (21) co-adds';
