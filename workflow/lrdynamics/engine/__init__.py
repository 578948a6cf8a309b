"""The engine: everything that trains a run and writes its file, for every study.

- data: ``data`` (raw formats, prepared files), ``batches`` (the split resident on the
  device, epochs of ``randperm``, crop and flip on whole batches);
- nets: ``facts`` (datasets and architectures, plain Python), ``models``;
- optimization: ``schedules`` (LR and WD per update, the exponential counterparts),
  ``adaptive`` (Adam/RMSprop rules, plain Python), ``optimizers`` (torch.optim and the
  SVAG loss);
- trainers: ``trainer`` (minibatch SGD/Adam/SVAG) with ``recording`` and ``quantities``,
  ``gd`` (full-batch GD) with ``hessian``; ``gradient_noise`` (G and N);
- the job: ``job`` (device, resume, fit, write), ``checkpoint``, ``devices``, ``logs``;
- run files: ``contract`` (every variable, plain Python), ``runfile``, ``combine``,
  ``files``.

Importing the package imports nothing; the torch-free modules (``facts``, ``contract`` and
``adaptive`` in plain Python, ``schedules`` with numpy) are read by the config before any
job starts.
"""
