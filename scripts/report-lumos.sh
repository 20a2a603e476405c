#!/usr/bin/env bash
# Regenerate reports/lumos/{faithful,realistic,paper}: `lumos validate` on 10,000 held-out 96-px
# stamps per set, cut from the recipe's simulated survey (survey seed 1, stamp seed 3).
#   faithful:  the training distribution (paper §2.2): per-band fluxes drawn independently of the
#              galaxy, shapes and fluxes from brightness-balanced populations (uniform in i 16.5-23)
#   realistic: each galaxy's own catalogue flux (natural number counts, flux tracks i_auto)
#   paper:     the reference `paper` architecture (trained on another set) on the realistic set
# Usage: bash scripts/report-lumos.sh [WORKDIR]   (default /tmp/lumos-report; about 15 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
work="${1:-/tmp/lumos-report}"
survey="$work/survey"
lumos=.venv/bin/lumos
[ -f "$survey/manifest.json" ] || $lumos simulate survey --out "$survey" --ccd-shape 2048 2048 \
    --bands NB455 NB535 NB615 NB685 NB765 NB845 --n-exposures 2 --seed 1 -q
common=(--exposures "$survey/exposures" --catalog "$survey/catalog.parquet" --n-stamps 10000 --size 96 --seed 3 -q)
$lumos simulate training-set "${common[@]}" --out "$work/test-balanced" --flux-source band_distribution \
    --flux-population 200000 --flux-count-slope 0 --shape-population 200000 --shape-count-slope 0 \
    --population-i-range 16.5 23
$lumos simulate training-set "${common[@]}" --out "$work/test-catalog" --flux-source catalog
$lumos validate --model default --no-ccd-model fast-noccd --test-set "$work/test-balanced" \
    --exposures "$survey/exposures" --catalog "$survey/catalog.parquet" --out reports/lumos/faithful -q
$lumos validate --model default --no-ccd-model fast-noccd --test-set "$work/test-catalog" \
    --deblend-stamps 0 --out reports/lumos/realistic -q
$lumos validate --model paper --test-set "$work/test-catalog" \
    --exposures "$survey/exposures" --catalog "$survey/catalog.parquet" --out reports/lumos/paper -q
