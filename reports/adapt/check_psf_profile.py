"""Does the injection's PSF profile (GalSim Kolmogorov) instead of TEAHUPOO's (Moffat, beta 3.5) at the same FWHM
bias a ``lumos adapt`` candidate? In its TEAHUPOO validation stamps (no neighbour) the noiseless galaxy is
swapped for the GalSim Moffat one (a check that the rendering matches) and for the Kolmogorov one; the model
channel, noise and background are kept. Bias by SNR (f0 / err of the unchanged stamps).

Usage::

    .venv/bin/python reports/adapt/check_psf_profile.py RUN MODEL.pt SURVEY.json OUT.json
"""
import json
import sys
from pathlib import Path

import galsim
import numpy as np
import pandas as pd
import torch

from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.lumos.mixture import mixture_quantile
from lumos_ops.lumos.preprocess import prepare_inputs
from lumos_ops.survey import load_survey, use_survey

torch.set_num_threads(1)
run, model, survey_file, out_json = sys.argv[1:5]
survey = load_survey(survey_file)
ps = survey.pixel_scale
with use_survey(survey):
    ts = TrainingSet(run + '/teahupoo')
    m = load_checkpoint(model, device='cpu')
    meta = ts.meta
    if 'bands' in m.metadata:
        meta['band_epoch'] = np.asarray([survey.embedding_row(b, int(e)) for b, e in zip(meta['band'], meta['epoch'])])
    ids = ts.indices('val')
    ids = ids[meta['nbr_flux'].to_numpy()[ids] <= 0]
    img = ts.images(ids).astype(np.float64)
    md = meta.iloc[ids].reset_index(drop=True)
    S = img.shape[-1]

    def draw(k, psf, off):
        r = md.loc[k]
        gal = galsim.Sersic(n=float(r.sersic_n), half_light_radius=float(r.r50) / ps).shear(q=float(r.q), beta=float(r.pa) * galsim.degrees)
        return galsim.Convolve([gal, psf]).drawImage(nx=S, ny=S, scale=1.0, offset=off).array.astype(np.float64)

    # find the offset convention that reproduces the stored Moffat models
    best = None
    for ox, oy in ((0, 0), (0.5, 0.5), (-0.5, -0.5)):
        res = []
        for k in range(20):
            r = md.loc[k]
            mof = galsim.Moffat(beta=float(r.psf_beta), fwhm=float(r.psf_fwhm) / ps)
            res.append(np.abs(draw(k, mof, (float(r.dx) + ox, float(r.dy) + oy)) - img[k, 1]).max() / img[k, 1].max())
        if best is None or np.median(res) < best[0]:
            best = (float(np.median(res)), (ox, oy))
    print('GalSim Moffat vs stored model: max |diff| / peak', round(best[0], 5), 'offset', best[1])
    ox, oy = best[1]
    variants = {'teahupoo': img[:, 0].copy(), 'galsim_moffat': img[:, 0].copy(), 'galsim_kolmogorov': img[:, 0].copy()}
    for k in range(len(md)):
        r = md.loc[k]
        f = float(r.flux)
        off = (float(r.dx) + ox, float(r.dy) + oy)
        mof = draw(k, galsim.Moffat(beta=float(r.psf_beta), fwhm=float(r.psf_fwhm) / ps), off)
        kol = draw(k, galsim.Kolmogorov(fwhm=float(r.psf_fwhm) / ps), off)
        variants['galsim_moffat'][k] += f * (mof - img[k, 1])
        variants['galsim_kolmogorov'][k] += f * (kol - img[k, 1])
    out = {}
    for name, cut in variants.items():
        inputs = prepare_inputs(cut.astype(np.float32), img[:, 1].astype(np.float32), md['i_auto'].to_numpy(), md['ccd_x'].to_numpy(),
                                md['ccd_y'].to_numpy(), md['band_epoch'].to_numpy(), m.normalization)
        q = []
        with torch.no_grad():
            for s in range(0, len(md), 256):
                sl = slice(s, s + 256)
                o = m.net(torch.from_numpy(inputs.images[sl]), torch.from_numpy(inputs.scalars[sl]), torch.from_numpy(inputs.band_epoch[sl]))
                fs = m.normalization.flux_scale
                q.append(mixture_quantile([0.16, 0.5, 0.84], o.log_alpha.exp().numpy().astype(float), (o.mu * fs).numpy().astype(float),
                                          (o.sigma * fs).numpy().astype(float), None))
        q = np.concatenate(q)
        d = md.copy()
        d['med'], d['err'] = q[:, 1], (q[:, 2] - q[:, 0]) / 2
        if name == 'teahupoo':
            err0 = d['err'].to_numpy()
        d['snr'] = d['flux'] / err0
        d['bin'] = pd.cut(d['snr'], [0, 2, 5, 10, 20, 50, 1e5])
        g = d.groupby('bin', observed=True).apply(lambda t: pd.Series({'n': len(t), 'bias_rel': np.median((t.med - t.flux) / t.flux),
                                                                     'bias_sig': np.median((t.med - t.flux) / t.err)}))
        out[name] = [{'snr_bin': str(k), **{c: float(v) for c, v in row.items()}} for k, row in g.iterrows()]
        print(name)
        print(g.round(3).to_string())
    Path(out_json).write_text(json.dumps({'rendering_max_diff_over_peak': best[0], 'offset': best[1], **out}, indent=1))
