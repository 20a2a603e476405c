-- lumos-ops schema, version 9: the writer role changes the pipeline's tables only, through no view,
-- and the photo-z validation history only grows.
--
-- V002 granted lumos_writer INSERT, UPDATE and DELETE on every table of the schema, views included,
-- and as the default for new ones. lumos.exposure_rows (V004) is a one-table view, which PostgreSQL
-- makes updatable: deleting through it removed exposures (and, through V006's trigger, their
-- measurements) that the writer may not delete from lumos.exposures itself. lumos.photoz_checks
-- (V003) was meant to be appended to (SELECT, INSERT) but kept the default UPDATE and DELETE.

REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON lumos.exposure_rows, lumos.night_summary, lumos.latest_coadds
    FROM lumos_writer;
REVOKE UPDATE, DELETE, TRUNCATE ON lumos.photoz_checks FROM lumos_writer;
