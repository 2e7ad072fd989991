"""Training stage: splits, standardisation, the Keras model, and task metrics.

`metrics` and `split` are NumPy-only; `model` imports TensorFlow lazily.
"""
