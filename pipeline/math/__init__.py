"""Pure math: the preference losses and their registry, the offset functions, KL estimators,
pair construction, the training score, Pareto frontiers and binomial statistics.

Functions of tensors and arrays only: no config, no files, no package errors. Imports
nothing of the package (checked by `make lint`)."""
