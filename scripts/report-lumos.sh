#!/usr/bin/env bash
# Regenerate reports/lumos/{faithful,fast-v2,fast-v5,realistic,balanced,paper}: `lumos validate` on held-out
# 96-px stamps cut from the recipe's simulated survey (survey seed 1, stamp seed 3). LUMOS is scored by
# its PDF median (`--estimator median`, the default); every report also holds the mean and peak.
#   faithful:  the shipped default (its no-CCD companion for the PIT) against aperture, optimal weights
#              and profile fitting (the paper's Fig. 7) on 40,000 stamps of the paper's §2.2
#              distribution: per-band fluxes drawn independently of the galaxy with the survey's
#              number counts, shapes from a population uniform in i 17.5-23, a neighbour added to
#              30 % of the stamps
#   fast-v2:   the companion lumos-fast-v2 (an earlier default) on the same set
#   fast-v5:   the companion lumos-fast-v5 on the same set
#   realistic: the shipped default on 10,000 stamps with each galaxy's own catalogue flux (tracks i_auto)
#   balanced:  the companion lumos-fast-v4, trained on brightness-balanced fluxes, on 10,000 stamps of its
#              own distribution
#   paper:     the reference `paper` architecture (trained on balanced fluxes) on the same balanced set
# The deblending test (4,000 stamps, seed 5) scores TEAHUPOO targets whose fluxes are drawn as the
# test set's and also reports targets with their own catalogue SED (`deblending_other.catalog`).
# Usage: bash scripts/report-lumos.sh [WORKDIR]   (default /tmp/lumos-report; about 50 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
work="${1:-/tmp/lumos-report}"
survey="$work/survey"
lumos=.venv/bin/lumos
[ -f "$survey/manifest.json" ] || $lumos simulate survey --out "$survey" --ccd-shape 2048 2048 \
    --bands NB455 NB535 NB615 NB685 NB765 NB845 --n-exposures 2 --seed 1 -q
common=(--exposures "$survey/exposures" --catalog "$survey/catalog.parquet" --n-stamps 10000 --size 96 --seed 3 -q)
faithful=(--exposures "$survey/exposures" --catalog "$survey/catalog.parquet" --n-stamps 40000 --size 96 --seed 3 -q)
pairs=(--exposures "$survey/exposures" --catalog "$survey/catalog.parquet")
[ -f "$work/test-faithful40k/manifest.json" ] || $lumos simulate training-set "${faithful[@]}" --out "$work/test-faithful40k" \
    --flux-source band_distribution --flux-population 200000 --shape-population 200000 --shape-count-slope 0 \
    --population-i-range 17.5 23 --neighbour-fraction 0.3
[ -f "$work/test-balanced/manifest.json" ] || $lumos simulate training-set "${common[@]}" --out "$work/test-balanced" \
    --flux-source band_distribution --flux-population 200000 --flux-count-slope 0 --shape-population 200000 \
    --shape-count-slope 0 --population-i-range 16.5 23
[ -f "$work/test-catalog/manifest.json" ] || $lumos simulate training-set "${common[@]}" --out "$work/test-catalog" \
    --flux-source catalog
$lumos validate --model default --no-ccd-model fast-noccd --test-set "$work/test-faithful40k" "${pairs[@]}" \
    --baselines aperture optimal modelfit --out reports/lumos/faithful -q
$lumos validate --model fast-v2 --test-set "$work/test-faithful40k" "${pairs[@]}" --out reports/lumos/fast-v2 -q
$lumos validate --model fast-v5 --test-set "$work/test-faithful40k" "${pairs[@]}" --out reports/lumos/fast-v5 -q
$lumos validate --model default --test-set "$work/test-catalog" --deblend-stamps 0 --out reports/lumos/realistic -q
$lumos validate --model balanced --test-set "$work/test-balanced" "${pairs[@]}" --out reports/lumos/balanced -q
$lumos validate --model paper --test-set "$work/test-balanced" "${pairs[@]}" --out reports/lumos/paper -q
