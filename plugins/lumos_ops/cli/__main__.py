"""``python -m lumos_ops.cli`` runs the ``lumos`` command; :data:`COMMANDS` lists its sub-commands.

A sub-command's module is imported only when that sub-command runs (``lumos measure`` never
imports the database, Airflow or training code); ``lumos --help`` lists every command from this
table without importing any of them.
"""

import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # "command": ("module of lumos_ops.cli with register(subparsers)", "one-line help"),
    "adapt": ("adapt", "adapt LUMOS to a survey's exposures and score it by injection on held-out ones"),
    "bench": ("bench", "benchmarks and evidence reports"),
    "db": ("db", "photometry database: local server, migrations, roles, queries"),
    "demo": ("demo", "simulate a small night and run lumos_nightly through Airflow"),
    "inject": ("inject", "inject GalSim galaxies into real frames, measure them with the production code, score at fixed truth"),
    "measure": ("measure", "forced photometry of catalogue targets on one exposure"),
    "model": ("model", "model registry: list, attach reports, promote, roll back"),
    "night": ("night", "run the nightly pipeline for one night"),
    "photoz": ("photoz", "photometric redshifts from narrow-band co-adds and their validation"),
    "simulate": ("simulate", "simulate a PAUCam-like survey or a TEAHUPOO training set"),
    "survey": ("survey", "write or show a survey description file (bands, epochs, CCDs, header mapping)"),
    "train": ("train", "train a LUMOS network on TEAHUPOO shards (or run a full recipe)"),
    "transfer": ("train", "unsupervised transfer learning on exposure pairs (eq. 12)"),
    "validate": ("train", "validation report of a LUMOS model (JSON + PNG)"),
}
"""Sub-command -> (module of ``lumos_ops.cli`` whose ``register(subparsers)`` adds it, help line).
Add one line per new sub-command; a module that is not listed is still found (and imported) for
``lumos --help`` and for its commands, only more slowly."""

if __name__ == "__main__":
    from lumos_ops.cli import main

    sys.exit(main())
