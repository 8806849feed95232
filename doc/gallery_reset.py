"""Run by sphinx-gallery before each example (``reset_modules`` in conf.py).

A fully qualified name rather than a function in conf.py: Sphinx caches its
configuration, and a function there is a warning (an error under -W).
"""


def reset_sklearn_config(gallery_conf, fname):
    """Every example starts from scikit-learn's default configuration: one
    that switches metadata routing on for the session must not change how
    the next one runs (``cross_val_score(groups=...)`` refuses it)."""
    import sklearn

    sklearn.set_config(enable_metadata_routing=False)
