"""A ``lumos adapt`` candidate on fresh TEAHUPOO stamps (its training set's generator and settings, another
seed) cut on the held-out exposures and on the training exposures: bias (median of (f - f0) / f0 and of
(f - f0) / err, f the likelihood median) and pull sigma68 by SNR (f0 / err), stamps without a neighbour.

Usage::

    PYTHONPATH=... .venv/bin/python reports/adapt/check_fresh_stamps.py RUN SURVEY.json CATALOG.parquet N_STAMPS

Writes RUN/check-heldout/, RUN/check-train/ (the stamps) and RUN/fresh_stamps_candidate.json.
"""
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lumos_ops.io.training_set import TrainingSet
from lumos_ops.lumos.checkpoint import load_checkpoint
from lumos_ops.sim import TeahupooConfig, generate_training_set
from lumos_ops.survey import load_survey, use_survey
from stamp_quantiles import stamp_quantiles

torch.set_num_threads(1)
run, survey_file, catalog_file, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model = sys.argv[5] if len(sys.argv) > 5 else run + '/model.pt'
tag = sys.argv[6] if len(sys.argv) > 6 else 'candidate'
survey = load_survey(survey_file)
split = json.loads(Path(run, 'split.json').read_text())
saved = json.loads(Path(run, 'teahupoo/manifest.json').read_text())['config']
catalog = pd.read_parquet(catalog_file)
results = {}
with use_survey(survey):
    m = load_checkpoint(model, device='cpu')
    for which in ('heldout', 'train'):
        out = Path(run, f'check-{which}')
        if not (out / 'manifest.json').is_file():
            fields = {f.name for f in dataclasses.fields(TeahupooConfig)}
            cfg = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in fields}
            cfg.update(n_stamps=n, seed=12345, split_fractions=(0.5, 0.5, 0.0))
            generate_training_set(TeahupooConfig(**cfg), split[which], catalog, out)
        ts = TrainingSet(out)
        if 'bands' in m.metadata:
            ts.meta['band_epoch'] = np.asarray([survey.embedding_row(b, int(e)) for b, e in zip(ts.meta['band'], ts.meta['epoch'])])
        ids = np.arange(len(ts))[ts.meta['nbr_flux'].to_numpy() <= 0]
        q = stamp_quantiles(m, ts, ids)
        d = ts.meta.iloc[ids].copy()
        d['med'], d['err'] = q[:, 1], (q[:, 2] - q[:, 0]) / 2
        d['bin'] = pd.cut(d['flux'] / d['err'], [0, 2, 5, 10, 20, 50, 1e5])
        g = d.groupby('bin', observed=True).apply(lambda t: pd.Series({
            'n': len(t), 'bias_rel': np.median((t.med - t.flux) / t.flux), 'bias_sig': np.median((t.med - t.flux) / t.err),
            'pull68': np.subtract(*np.percentile((t.med - t.flux) / t.err, [84, 16])) / 2}))
        print(f"{tag} on fresh stamps of the {which} exposures")
        print(g.round(3).to_string())
        results[which] = [{'snr_bin': str(k), **{c: float(v) for c, v in row.items()}} for k, row in g.iterrows()]
Path(run, f'fresh_stamps_{tag}.json').write_text(json.dumps(results, indent=1))
