"""Monitoring stage: how a deployed model and the data it sees compare with its training.

It sits above `tinyship.train`, `tinyship.registry` and `tinyship.deploy` (it reads what
they store: a version's drift profile, the deployment log) and below `tinyship.retrain`,
which turns its reports into retrain triggers. The package itself imports nothing, so
`import tinyship.monitor` stays cheap; `drift` brings numpy, pandas and SciPy when used.
"""
