"""Scoring photometry against known truth.

* :mod:`~lumos_ops.evaluation.validate` -- ``lumos validate``, the evidence report of a LUMOS model
  on held-out stamps (options in :mod:`~lumos_ops.evaluation.validate_config`), built from:
  :mod:`~lumos_ops.evaluation.stamp_inference` (LUMOS on a TEAHUPOO set),
  :mod:`~lumos_ops.evaluation.stamp_photometry` (the classical baselines on the same stamps),
  :mod:`~lumos_ops.evaluation.method_comparison` (bias and sigma68 per magnitude bin, Fig. 7),
  :mod:`~lumos_ops.evaluation.prior_only` and :mod:`~lumos_ops.evaluation.bayes_reference`
  (reference estimators), :mod:`~lumos_ops.evaluation.calibration` (PIT, coverage),
  :mod:`~lumos_ops.evaluation.fixed_truth_report` (bins of true flux and SNR),
  :mod:`~lumos_ops.evaluation.snr`, :mod:`~lumos_ops.evaluation.pair_width` (D statistic),
  :mod:`~lumos_ops.evaluation.deblend` and :mod:`~lumos_ops.evaluation.deblend_report` (Figs. 8-9),
  :mod:`~lumos_ops.evaluation.targets` (acceptance table), :mod:`~lumos_ops.evaluation.validation_plot`
  and :mod:`~lumos_ops.evaluation.report_notes` (the report's explanatory sentences);
* :mod:`~lumos_ops.evaluation.fixed_truth`, :mod:`~lumos_ops.evaluation.population_prior` -- fixed-truth
  metrics and the population-prior PIT;
* :mod:`~lumos_ops.evaluation.injection`, :mod:`~lumos_ops.evaluation.injection_report` -- GalSim
  injection-recovery on real frames (``lumos inject``).
"""
