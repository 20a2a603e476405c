-- lumos-ops schema, version 7: the LUMOS mixture's truncation flag is a column of lumos.measurements.
--
-- The mixture of a measurement is mix_alpha, mix_mu, mix_sigma (V001) and now mix_truncated: true
-- where the PDF is the eq. (10) density (every component renormalised on f >= 0, zero below), false
-- for an untruncated mixture, NULL exactly where the row has no mixture (all three arrays NULL:
-- classical methods). Until now the flag travelled as the key 'truncated' of the jsonb extras,
-- which the co-add cast back to a boolean.
--
-- Backfill: rows with a mixture take the boolean of extras ->> 'truncated' (false when the key is
-- absent, as the co-add read it), and the key leaves extras (extras becomes NULL when nothing else
-- is left, as the writer stores it). A non-boolean 'truncated' value (never written by the
-- pipeline) stays in extras and reads as false. This rewrites every LUMOS row once: run it in a
-- maintenance window on a large database and VACUUM lumos.measurements afterwards.

ALTER TABLE lumos.measurements ADD COLUMN mix_truncated boolean;
COMMENT ON COLUMN lumos.measurements.mix_truncated IS
    'LUMOS mixture truncated at f = 0 (eq. 10 density); NULL where the row has no mixture (mix_alpha, mix_mu, mix_sigma NULL)';

UPDATE lumos.measurements
SET mix_truncated = CASE
        WHEN mix_alpha IS NULL AND mix_mu IS NULL AND mix_sigma IS NULL THEN NULL
        WHEN jsonb_typeof(extras -> 'truncated') = 'boolean' THEN (extras ->> 'truncated')::boolean
        ELSE false
    END,
    extras = CASE
        WHEN jsonb_typeof(extras -> 'truncated') = 'boolean' THEN nullif(extras - 'truncated', '{}'::jsonb)
        ELSE extras
    END
WHERE mix_alpha IS NOT NULL OR mix_mu IS NOT NULL OR mix_sigma IS NOT NULL OR extras ? 'truncated';
