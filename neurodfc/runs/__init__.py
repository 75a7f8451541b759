"""Run folders: their layout, file names, atomic writes, locks, checkpoints, "same run".

One module per concern, imported by name (this package imports nothing, so the lowest layer
can use :mod:`neurodfc.runs.files` without pulling in the training layer):

* :mod:`neurodfc.runs.files`: the one atomic writer (temp file in the same folder, fsync,
  ``os.replace``), the cleanup of temp files a killed writer left, the run-folder lock and
  :class:`~neurodfc.runs.files.RunDirError`; imports nothing from neurodfc;
* :mod:`neurodfc.runs.checkpoint`: checkpoint files with a SHA-256 content digest, verified
  on every load;
* :mod:`neurodfc.runs.folder`: the layout and file names of a run folder, the "same run"
  decision shared by ``train --resume`` and ``sweep`` (skipping finished runs, merging), and
  the reading of results files with one-line errors (``report``, ``load_run``, sweeps).
"""
