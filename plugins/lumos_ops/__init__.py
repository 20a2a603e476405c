"""lumos-ops: deep-learning galaxy photometry (LUMOS, Cabayol et al. 2021) for survey pipelines.

The package has three layers:

* the science core (``render``, ``sim``, ``photometry``, ``lumos``, ``io``), which uses numpy,
  torch and astropy and never imports Airflow;
* I/O hooks for object storage and PostgreSQL (``pipeline``);
* thin Airflow operators and the plugin entry point (``airflow``), loaded only by Airflow.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
