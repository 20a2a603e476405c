"""A ``lumos adapt`` candidate on its own TEAHUPOO validation stamps (no neighbour), with the catalogue's
``i_auto`` and with the injection's (26 - 2.5 log10 of the true flux in e-/s): bias (median of (f - f0) / |f0|
and of (f - f0) / err, f the likelihood median) and pull sigma68, by SNR (f0 / err).

Usage::

    .venv/bin/python reports/adapt/check_validation_stamps.py RUN MODEL.pt SURVEY.json OUT.json
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.survey import load_survey, use_survey
from stamp_quantiles import stamp_quantiles

torch.set_num_threads(1)
run, model, survey_file, out_json = sys.argv[1:5]
survey = load_survey(survey_file)
with use_survey(survey):
    ts = TrainingSet(run + '/teahupoo')
    m = load_checkpoint(model, device='cpu')
    if 'bands' in m.metadata:
        ts.meta['band_epoch'] = np.asarray([survey.embedding_row(b, int(e)) for b, e in zip(ts.meta['band'], ts.meta['epoch'])])
    ids = ts.indices('val')
    ids = ids[ts.meta['nbr_flux'].to_numpy()[ids] <= 0]
    rows = []
    for mode in ('catalogue', 'injection'):
        if mode == 'injection':
            ts.meta['i_auto'] = 26.0 - 2.5 * np.log10(np.maximum(ts.meta['flux'].to_numpy(), 0.05))
        q = stamp_quantiles(m, ts, ids)
        meta = ts.meta.iloc[ids].copy()
        meta['med'], meta['err'] = q[:, 1], (q[:, 2] - q[:, 0]) / 2
        meta['snr'] = meta['flux'] / meta['err']
        meta['bin'] = pd.cut(meta['snr'], [-100, 0, 2, 5, 10, 20, 50, 1e5])
        g = meta.groupby('bin', observed=True).apply(lambda d: pd.Series({
            'n': len(d), 'bias_rel': np.median((d.med - d.flux) / d.flux.abs()), 'bias_sig': np.median((d.med - d.flux) / d.err),
            'pull68': np.subtract(*np.percentile((d.med - d.flux) / d.err, [84, 16])) / 2}))
        g.insert(0, 'i_auto', mode)
        rows.append(g)
    table = pd.concat(rows)
    print(table.round(3).to_string())
    Path(out_json).write_text(json.dumps([{'snr_bin': str(k), **{c: (v if isinstance(v, str) else float(v)) for c, v in r.items()}}
                                          for k, r in table.iterrows()], indent=1))
