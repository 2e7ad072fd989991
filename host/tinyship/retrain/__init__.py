"""Retrain stage: the periodic job that trains a challenger and decides whether it replaces
the production champion.

This stage sits above `tinyship.train`, `tinyship.registry`, `tinyship.deploy` and
`tinyship.monitor` and may import them; they never import it. The package itself imports
nothing, so `import tinyship.retrain` stays cheap; `compare` holds the champion-vs-challenger
decision as pure functions over arrays (SciPy and scikit-learn are imported when called).
"""
