#!/usr/bin/env bash
# Regenerate reports/lumos/{faithful,realistic}: `lumos validate` of the shipped default model on
# 10,000 held-out 96-px stamps per set, cut from the recipe's simulated survey (seeds 1 and 3).
#   faithful:  per-band fluxes drawn independently of the galaxy (paper §2.2), bins in band magnitude
#   realistic: each galaxy's own catalogue flux, bins in i_auto
# Usage: bash scripts/report-lumos.sh [WORKDIR]   (default /tmp/lumos-report; about 15 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
work="${1:-/tmp/lumos-report}"
survey="$work/survey"
lumos=.venv/bin/lumos
$lumos simulate survey --out "$survey" --ccd-shape 2048 2048 \
    --bands NB455 NB535 NB615 NB685 NB765 NB845 --n-exposures 2 --seed 1 -q
for source in band_distribution catalog; do
  $lumos simulate training-set --exposures "$survey/exposures" --catalog "$survey/catalog.parquet" \
      --out "$work/test-$source" --n-stamps 10000 --size 96 --seed 3 --flux-source "$source" -q
done
$lumos validate --model default --no-ccd-model fast-noccd --test-set "$work/test-band_distribution" \
    --exposures "$survey/exposures" --catalog "$survey/catalog.parquet" --out reports/lumos/faithful -q
$lumos validate --model default --no-ccd-model fast-noccd --test-set "$work/test-catalog" \
    --deblend-stamps 0 --out reports/lumos/realistic -q
