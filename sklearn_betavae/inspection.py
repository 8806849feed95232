"""Inspecting a fitted beta-VAE: which latents does it use?

Core dependencies only.
"""

import numpy as np

__all__ = ["latent_kl"]


def latent_kl(estimator, X):
    """Mean KL divergence from the prior of each latent, over the samples of X.

    A latent whose KL is near zero carries no information about the data
    (its posterior is the prior for every sample); one well above zero (say
    0.1 nats or more) is in use. The sum over latents is the KL term of the
    loss.

    Parameters
    ----------
    estimator : BetaVAETransformer
        A fitted estimator.
    X : array-like of shape (n_samples, n_features)
        Data in the estimator's input space.

    Returns
    -------
    kl : ndarray of shape (n_components,)
        KL(q(z_j|x) || N(0, 1)) averaged over X, in nats, per latent j.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_betavae import BetaVAETransformer
    >>> from sklearn_betavae.inspection import latent_kl
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAETransformer(device="cpu", n_components=4, max_iter=5,
    ...                          random_state=0).fit(X[:200])
    >>> kl = latent_kl(vae, X[200:300])
    >>> kl.shape, bool((kl >= 0).all())
    ((4,), True)
    """
    X = estimator._validate_X(X)
    return np.mean(estimator._float64_model().latent_kl(X), axis=0)
