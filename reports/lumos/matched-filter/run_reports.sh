#!/usr/bin/env bash
# The four fixed-truth reports of scripts/report-lumos.sh for any LUMOS checkpoint, into OUT:
#   survey/, bright/ (lumos validate on the held-out survey's test sets), injection/ (GalSim into the real
#   frames of ../shared/realdata, seed 11), injection-sim/ (into two CCDs of the held-out survey, seed 12).
# Usage: bash reports/lumos/matched-filter/run_reports.sh MODEL OUT [WORKDIR]
#   WORKDIR (default /tmp/lumos-report) holds the held-out survey and test sets that scripts/report-lumos.sh
#   simulates (survey/, test-survey/, test-bright/); about 10 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../../.."
model="$1"; out="$2"; work="${3:-/tmp/lumos-report}"
realdata="${LUMOS_REALDATA:-../shared/realdata}"
lumos=.venv/bin/lumos
pairs=(--exposures "$work/survey/exposures" --catalog "$work/survey/catalog.parquet")
$lumos validate --model "$model" --test-set "$work/test-survey" "${pairs[@]}" --baselines aperture optimal \
    --deblend-stamps 0 --out "$out/survey" -q
$lumos validate --model "$model" --test-set "$work/test-bright" --baselines aperture optimal --deblend-stamps 0 \
    --out "$out/bright" -q
$lumos inject --model "$model" --frames "$realdata/sep_image.fits" "$realdata/sdss_g.fits.bz2" \
    "$realdata/sdss_r.fits.bz2" "$realdata/sdss_i.fits.bz2" --n-galaxies 200 --n-place 10 --seed 11 \
    --out "$out/injection" -q
sim_frames=($(find "$work/survey/exposures" -name '*.fits' | sort | head -n 2))
$lumos inject --model "$model" --frames "${sim_frames[@]}" --n-galaxies 200 --n-place 10 --seed 12 \
    --out "$out/injection-sim" -q
