#!/usr/bin/env bash
# Regenerate the LUMOS evidence in reports/lumos/ (docs/likelihood.md says what each number means):
#   survey/     `lumos validate` of the shipped default (its no-CCD companion for the PIT) against aperture
#               photometry and the optimal weighted sum on 10,000 held-out 96-px stamps of a survey simulated
#               with seed 7 in all 40 narrow bands x 2 epochs (the training survey has seed 1: no exposure is shared). Fluxes follow the
#               survey's own number counts (fainter than the training prior); a catalogue neighbour on 30 %.
#   bright/     the same on 10,000 stamps whose fluxes are uniform in i 16.5-23 (brighter than the survey).
#   injection/  `lumos inject`: GalSim galaxies (Sersic, bulge+disk+knots, blended pairs; 600 each, 10
#               placements, placed clear of the frames' PSF-matched detections) injected into the real frames of
#               ../shared/realdata and measured through the production path by every method (aperture, optimal,
#               modelfit, LUMOS); fixed-truth bins, co-adds of 2, 5 and 10 exposures, the targets table.
#   injection-sim/  the same into two simulated 2048x2048 CCD images of the held-out survey.
#   injection-sim8/ the same galaxies spread over eight such images (the first eight; two of them are
#               injection-sim's): less crowded frame realisations, eight blank-sky calibrations.
#   injection-moffat/  injection/ again (same seed, galaxies and positions) with the galaxies convolved by the
#               measurement's own Moffat PSF instead of a Kolmogorov one: the PSF model's share of the misses.
#               Every injection table carries model_flux (the noiseless catalogue-model flux, docs/likelihood.md).
#               Both measure with the default blank-sky error calibration (measure_exposure(calibrate_errors=True));
#               their tables keep the uncalibrated error in flux_err_raw.
#   error-floor/ the survey's error floor (docs/likelihood.md §11): an injection into two other exposures of the
#               held-out survey (the floor it asks for is the default's) and the floor every injection asks for.
#   calibration/ the blank-sky error scale k of every frame (frame_scales.json) and the injection scored before
#               (flux_err_raw) and after the calibration, from the same tables (before_after.json/.md; README.md there).
#   psf-profile/  how the Moffat PSF model reads the real frames' own stars (star_flux.json).
#   psf-from-stars/ the production methods on the real stars with a fixed 2.2 px PSF and the stars' own FWHM.
#   blank-offset/ blank-sky pulls by footprint on the real frames, with and without other sources' pixels.
#   lumos-width/  LUMOS blank-sky pulls by hole share, the source-present width on real and simulated frames.
#   frame-variants/ one real frame with a pedestal, scattered light, NaNs, int16, MEF, fpack, cut small.
#   ccd-extrapolation/ the default on full 4096x2048 PAUCam CCDs, whose far half it was not trained on.
#   noise-correlation/ the joint fit's variance factor under each real frame's correlated noise: on blank
#               sky (three coarse-sky block sizes) and on the injections' blends with the white factor.
#   crosstalk/  the neighbour leak each frame's isolated targets measure against the blends' noiseless one,
#               and the injections' blends with the target's own overlap term added (not applied).
# Every report holds per-bin metrics at fixed TRUE flux and TRUE SNR (key "fixed_truth" / "by_true_snr").
# Usage: [LUMOS_REALDATA=DIR] bash scripts/report-lumos.sh [WORKDIR]   (real frames default ../shared/realdata; WORKDIR default /tmp/lumos-report; about 1.5 h on 2 shared cores, plus about 1 h for the psf-beta runs at its end: 5 min each)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
work="${1:-/tmp/lumos-report}"
realdata="${LUMOS_REALDATA:-../shared/realdata}"
survey="$work/survey"
lumos=.venv/bin/lumos
bands=($(seq 455 10 845 | sed 's/^/NB/'))
[ -f "$survey/manifest.json" ] || $lumos simulate survey --out "$survey" --ccd-shape 2048 2048 \
    --bands "${bands[@]}" --n-exposures 2 --seed 7 -q
common=(--exposures "$survey/exposures" --catalog "$survey/catalog.parquet" --n-stamps 10000 --size 96 -q
        --flux-source band_distribution --flux-population 200000 --shape-population 200000 --shape-count-slope 0
        --neighbour-fraction 0.3)
[ -f "$work/test-survey/manifest.json" ] || $lumos simulate training-set "${common[@]}" --seed 3 \
    --population-i-range 17.5 23 --out "$work/test-survey"
[ -f "$work/test-bright/manifest.json" ] || $lumos simulate training-set "${common[@]}" --seed 4 \
    --flux-count-slope 0 --population-i-range 16.5 23 --out "$work/test-bright"
pairs=(--exposures "$survey/exposures" --catalog "$survey/catalog.parquet")
$lumos validate --model default --no-ccd-model fast-noccd --test-set "$work/test-survey" "${pairs[@]}" \
    --baselines aperture optimal --deblend-stamps 0 --out reports/lumos/survey -q
$lumos validate --model default --test-set "$work/test-bright" --baselines aperture optimal --deblend-stamps 0 \
    --out reports/lumos/bright -q
$lumos inject --frames "$realdata/sep_image.fits" "$realdata/sdss_g.fits.bz2" "$realdata/sdss_r.fits.bz2" \
    "$realdata/sdss_i.fits.bz2" --methods aperture optimal modelfit lumos --n-galaxies 600 --n-place 10 --seed 11 \
    --out reports/lumos/injection -q
$lumos inject --frames "$realdata/sep_image.fits" "$realdata/sdss_g.fits.bz2" "$realdata/sdss_r.fits.bz2" \
    "$realdata/sdss_i.fits.bz2" --n-galaxies 600 --n-place 10 --seed 11 --psf-profile moffat \
    --out reports/lumos/injection-moffat -q
sim_frames=($(find "$survey/exposures" -name '*.fits' | sort | head -n 2))
$lumos inject --frames "${sim_frames[@]}" --n-galaxies 600 --n-place 10 --seed 12 --out reports/lumos/injection-sim -q
sim8_frames=($(find "$survey/exposures" -name '*.fits' | sort | head -n 8))
$lumos inject --frames "${sim8_frames[@]}" --n-galaxies 600 --n-place 10 --seed 12 --out reports/lumos/injection-sim8 -q
floor_frames=($(find "$survey/exposures" -name '*.fits' | sort | tail -n 2))
$lumos inject --frames "${floor_frames[@]}" --populations sersic knots blended --n-galaxies 600 --n-place 10 --seed 21 \
    --out reports/lumos/error-floor/calibration -q
.venv/bin/python reports/lumos/error-floor/floor_from_tables.py reports/lumos/error-floor/floor.json \
    reports/lumos/error-floor/calibration/injection_table.parquet reports/lumos/injection/injection_table.parquet \
    reports/lumos/injection-sim/injection_table.parquet reports/lumos/injection-moffat/injection_table.parquet
r=reports/lumos
.venv/bin/python $r/aperture-correction/reference_truth.py $r/aperture-correction/reference_truth.json \
    real=$r/injection/injection_table.parquet real-moffat=$r/injection-moffat/injection_table.parquet \
    sim2=$r/injection-sim/injection_table.parquet sim8=$r/injection-sim8/injection_table.parquet \
    calibration=$r/error-floor/calibration/injection_table.parquet > $r/aperture-correction/reference_truth.txt
.venv/bin/python reports/lumos/calibration/frame_scales.py reports/lumos/calibration/frame_scales.json \
    "$realdata/sep_image.fits" "$realdata/sdss_g.fits.bz2" "$realdata/sdss_r.fits.bz2" "$realdata/sdss_i.fits.bz2" \
    "${sim_frames[@]}" > reports/lumos/calibration/frame_scales.md
.venv/bin/python reports/lumos/calibration/score_calibration.py reports/lumos/calibration/before_after.json \
    reports/lumos/injection reports/lumos/injection-sim > reports/lumos/calibration/before_after.md
.venv/bin/python reports/lumos/psf-profile/star_flux.py reports/lumos/psf-profile/star_flux.json \
    "$realdata/sdss_g.fits.bz2" "$realdata/sdss_r.fits.bz2" "$realdata/sdss_i.fits.bz2" "$realdata/sep_image.fits"
.venv/bin/python benchmarks/bench_background_realdata.py --data-dir "$realdata" --out reports/lumos/background/real_frames.json > reports/lumos/background/real_frames.txt
blank_frames=("$realdata/sdss_g.fits.bz2" "$realdata/sdss_r.fits.bz2" "$realdata/sdss_i.fits.bz2"
              "$realdata/sep_image.fits" "${sim8_frames[2]}")
.venv/bin/python reports/lumos/blank-offset/blank_pulls.py reports/lumos/blank-offset/blank_pulls.json "${blank_frames[@]}"
.venv/bin/python reports/lumos/blank-offset/blank_pulls.py --keep-other-sources \
    reports/lumos/blank-offset/blank_pulls_kept.json "${blank_frames[@]}"
.venv/bin/python reports/lumos/frame-variants/frame_variants.py "$work/frame-variants" "$realdata/sdss_r.fits.bz2"
cp "$work/frame-variants/frame_variants.json" reports/lumos/frame-variants/
.venv/bin/python reports/lumos/lumos-width/width_diagnostics.py reports/lumos/lumos-width/width_diagnostics.json \
    "$realdata/sdss_g.fits.bz2" "$realdata/sdss_r.fits.bz2" "$realdata/sdss_i.fits.bz2" "$realdata/sep_image.fits"
[ -f "$work/simone/manifest.json" ] || $lumos simulate survey --out "$work/simone" --bands NB455 --ccd-shape 2048 2048 \
    --n-ccds 2 --n-exposures 1 --n-epochs 1 --seed 7 -q
.venv/bin/python reports/lumos/lumos-width/width_diagnostics.py reports/lumos/lumos-width/width_diagnostics_sim.json \
    "$work/simone/exposures/2016-02-08/exp0100000_ccd01.fits"
$lumos inject --frames "$realdata/sep_image.fits" "$realdata/sdss_g.fits.bz2" "$realdata/sdss_r.fits.bz2" \
    "$realdata/sdss_i.fits.bz2" --populations sersic --n-galaxies 600 --n-place 4 --snr-range 0.001 0.002 --seed 11 \
    --out "$work/zero" -q
.venv/bin/python reports/lumos/lumos-width/zero_flux.py "$work/zero" reports/lumos/lumos-width/zero_flux.json
.venv/bin/python reports/lumos/psf-from-stars/star_flux_check.py reports/lumos/psf-from-stars/star_flux_check.json \
    "$realdata/sdss_g.fits.bz2" "$realdata/sdss_r.fits.bz2" "$realdata/sdss_i.fits.bz2"
.venv/bin/python reports/lumos/ccd-extrapolation/full_ccd.py reports/lumos/ccd-extrapolation/full_ccd.json
noise_frames=("$realdata/sep_image.fits" "$realdata/sdss_g.fits.bz2" "$realdata/sdss_r.fits.bz2" "$realdata/sdss_i.fits.bz2")
.venv/bin/python reports/lumos/noise-correlation/blank_pairs.py reports/lumos/noise-correlation/blank_pairs.json "${noise_frames[@]}"
for box in 128 256; do
    .venv/bin/python reports/lumos/noise-correlation/blank_pairs.py --sky-box $box \
        reports/lumos/noise-correlation/blank_pairs_sky$box.json "${noise_frames[@]}"
done
for name in injection injection-sim injection-sim8; do
    .venv/bin/python reports/lumos/noise-correlation/same_draws.py measure reports/lumos/$name \
        reports/lumos/noise-correlation/white_$name.parquet
    .venv/bin/python reports/lumos/noise-correlation/same_draws.py compare reports/lumos/$name \
        reports/lumos/noise-correlation/white_$name.parquet reports/lumos/noise-correlation/same_draws_$name.json
done
.venv/bin/python reports/lumos/crosstalk/leaks.py reports/lumos/crosstalk/leaks.json reports/lumos/injection \
    reports/lumos/injection-moffat reports/lumos/injection-sim reports/lumos/injection-sim8
for name in injection injection-sim; do
    .venv/bin/python reports/lumos/crosstalk/self_term.py reports/lumos/$name "$work/self-term-$name"
    $lumos inject --rescore --out "$work/self-term-$name" -q
    .venv/bin/python reports/lumos/crosstalk/compare.py reports/lumos/$name "$work/self-term-$name" \
        > reports/lumos/crosstalk/self_term_$name.txt
done
for name in injection injection-sim error-floor/calibration; do
    slug=${name//\//-}
    .venv/bin/python reports/lumos/crosstalk/by_separation.py reports/lumos/$name \
        reports/lumos/crosstalk/by_separation_$slug.json > reports/lumos/crosstalk/by_separation_$slug.txt
done
for name in injection injection-sim error-floor/calibration; do
    .venv/bin/python reports/lumos/crosstalk/kappa_by_overlap.py reports/lumos/$name \
        reports/lumos/crosstalk/by_separation_${name//\//-}.json
done > reports/lumos/crosstalk/kappa_by_overlap.txt
.venv/bin/python reports/lumos/crosstalk/noiseless_pairs.py > reports/lumos/crosstalk/noiseless_pairs.txt
.venv/bin/python reports/lumos/scattered-light/score.py reports/lumos/scattered-light/scattered_light.json \
    reports/lumos/injection-sim reports/lumos/injection-sim8 reports/lumos/error-floor/calibration \
    > reports/lumos/scattered-light/scattered_light.txt
.venv/bin/python reports/lumos/psf-beta/noiseless.py reports/lumos/psf-beta/noiseless.json > reports/lumos/psf-beta/noiseless.txt
for profile in kolmogorov stars moffat; do
    .venv/bin/python reports/lumos/psf-beta/fit_on_calibrators.py reports/lumos/injection $profile \
        reports/lumos/psf-beta/calibrators_real_$profile.json > reports/lumos/psf-beta/calibrators_real_$profile.txt
done
for profile in moffat kolmogorov; do
    .venv/bin/python reports/lumos/psf-beta/fit_on_calibrators.py reports/lumos/injection $profile \
        reports/lumos/psf-beta/calibrators_real_${profile}_fwhm.json 0.8,0.85,0.9,0.95,1,1.05,1.1 \
        > reports/lumos/psf-beta/calibrators_real_${profile}_fwhm.txt
done
for profile in moffat kolmogorov stars; do
    .venv/bin/python reports/lumos/psf-beta/fit_on_calibrators.py reports/lumos/injection $profile \
        reports/lumos/psf-beta/windowed_real_${profile}_fwhm.json 0.9,0.95,1,1.05,1.1 --window \
        > reports/lumos/psf-beta/windowed_real_${profile}_fwhm.txt
done
mkdir -p "$work/psf-beta"
for beta in 3.5 5.5; do
    .venv/bin/python reports/lumos/psf-beta/inject_at_beta.py reports/lumos/injection $beta "$work/psf-beta/beta-$beta"
    .venv/bin/python reports/lumos/psf-beta/inject_at_beta.py reports/lumos/injection $beta "$work/psf-beta/beta-$beta-r995" 0.995
done
.venv/bin/python reports/lumos/psf-beta/compare_at_beta.py reports/lumos/psf-beta/at_beta.json \
    "β3.5=$work/psf-beta/beta-3.5" "β5.5=$work/psf-beta/beta-5.5" "β3.5r995=$work/psf-beta/beta-3.5-r995" \
    "β5.5r995=$work/psf-beta/beta-5.5-r995" > reports/lumos/psf-beta/at_beta.txt
