"""One real frame stored and conditioned as other surveys store theirs, through ``lumos inject`` (README.md here).

From one real frame (default ``../shared/realdata/sdss_r.fits.bz2``) this writes variants that keep
its pixels' information but change what a reader must cope with:

- ``original``: the frame as float32;
- ``pedestal``: plus 100 times its pixel noise (an unsubtracted sky);
- ``gradient``: plus a ramp of 8 sigma across it and a bump of 4 sigma (scattered light);
- ``nans``: NaN in its first 40 columns, a 120 x 120 block and a 2-column bad column;
- ``small``: a 300 x 400 px cut of it;
- ``int16``: scaled to 12 counts of noise and stored as 16-bit integers;
- ``mef``: the image in a ``SCI`` extension after an empty primary, a mask extension after it;
- ``fpack``: Rice-compressed (``CompImageHDU``, quantize level 16), as DECam and HSC ship frames;
- ``quantised``: stored in integers coarser than its noise (0.4 counts of noise): refused by name.

Each is measured with ``lumos inject --populations sersic --n-galaxies 300 --n-place 4 --seed 5``
(GalSim Sérsic galaxies, the production path ``read_exposure -> measure_exposure``). Per method and
bin of true SNR (2-5, 5-10, 10-20, 20-50, >= 50) the JSON keeps bias, pull sigma68 and 68 %
coverage; the table prints them.

Usage: .venv/bin/python reports/lumos/frame-variants/frame_variants.py OUT_DIR [FRAME]
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

from lumos_ops.evaluation.injection import read_frame, robust_sigma

METHODS = ("aperture", "optimal", "lumos")
BINS = (2.0, 5.0, 10.0, 20.0, 50.0)
INJECT = ["--populations", "sersic", "--n-galaxies", "300", "--n-place", "4", "--seed", "5", "-q"]


def write_variants(frame: str, out: Path) -> dict[str, Path]:
    """The variants of ``frame`` (module docstring) as FITS files under ``out``; name -> path."""
    data = read_frame(frame).astype(np.float32)
    _, sigma = robust_sigma(data)
    ny, nx = data.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    def primary(name: str, pixels: np.ndarray) -> None:
        paths[name] = out / f"{name}.fits"
        fits.PrimaryHDU(pixels).writeto(paths[name], overwrite=True)

    primary("original", data)
    primary("pedestal", data + np.float32(100.0 * sigma))
    bump = np.exp(-((xx - nx / 3.0) ** 2 + (yy - ny / 2.0) ** 2) / (2.0 * (0.45 * min(nx, ny)) ** 2))
    primary("gradient", (data + sigma * (8.0 * xx / nx + 4.0 * bump)).astype(np.float32))
    holes = data.copy()
    holes[:, :40] = np.nan
    holes[ny // 2 - 60 : ny // 2 + 60, nx // 2 - 60 : nx // 2 + 60] = np.nan
    holes[:, (3 * nx) // 4 : (3 * nx) // 4 + 2] = np.nan
    primary("nans", holes)
    primary("small", data[ny // 2 - 150 : ny // 2 + 150, nx // 2 - 200 : nx // 2 + 200].copy())
    primary("int16", np.clip(np.rint(data / sigma * 12.0 + 1000.0), -32768, 32767).astype(np.int16))
    paths["mef"] = out / "mef.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="SCI"),
                  fits.ImageHDU(np.zeros(data.shape, np.int16), name="MASK")]).writeto(paths["mef"], overwrite=True)
    paths["fpack"] = out / "fpack.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, name="SCI", quantize_level=16)]).writeto(
        paths["fpack"], overwrite=True)
    primary("quantised", np.clip(np.rint(data / sigma * 0.4 + 1000.0), -32768, 32767).astype(np.int16))
    return paths


def score(report: Path) -> dict[str, dict[str, list[float | None]]]:
    """Bias, pull sigma68 and coverage per method and bin of true SNR (BINS) of an injection report."""
    entry = json.loads(report.read_text())["populations"]["sersic"]["methods"]
    out = {}
    for method in METHODS:
        rows = {row["lo"]: row for row in entry[method]["by_true_snr"] if row["lo"] is not None}
        out[method] = {key: [rows[lo][name] if lo in rows else None for lo in BINS]
                       for key, name in (("bias", "bias"), ("pull", "pull_sigma68"), ("coverage", "coverage68"))}
    return out


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    frame = argv[1] if len(argv) > 1 else "../shared/realdata/sdss_r.fits.bz2"
    lumos = str(Path(sys.executable).with_name("lumos"))
    results: dict[str, object] = {"frame": frame, "command": " ".join(["lumos inject", *INJECT]), "variants": {}}
    for name, path in write_variants(frame, out / "frames").items():
        run = subprocess.run([lumos, "inject", "--frames", str(path), "--out", str(out / name), *INJECT],
                             capture_output=True, text=True)
        if run.returncode != 0 or not (out / name / "injection_report.json").exists():
            message = (run.stderr.strip().splitlines() or ["(no message)"])[-1]
            results["variants"][name] = {"refused": message}
            print(f"{name:10s} refused: {message}")
            continue
        results["variants"][name] = score(out / name / "injection_report.json")
        for method, metrics in results["variants"][name].items():
            cells = " | ".join(" ".join("  -  " if v is None else f"{v:+.3f}" if key == "bias" else f"{v:.2f}"
                                        for v in values) for key, values in metrics.items())
            print(f"{name:10s} {method:9s} {cells}")
    (out / "frame_variants.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
