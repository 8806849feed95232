"""The beta-VAE loss, with the semantics of NeuroSpin's ``nidl``.

Pure torch: nothing here knows about skorch or scikit-learn.
"""

import math
from numbers import Real

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Laplace, Normal

DISTRIBUTIONS = ("normal", "laplace", "bernoulli")


def check_distribution(default_dist):
    """Raise a ValueError naming the allowed values unless ``default_dist`` is one."""
    if not isinstance(default_dist, str) or default_dist not in DISTRIBUTIONS:
        raise ValueError(
            f"default_dist must be one of {', '.join(map(repr, DISTRIBUTIONS))}; "
            f"got {default_dist!r}."
        )


def decoder_distribution(output, default_dist):
    """Read a decoder's output tensor as a distribution over the data.

    The output is the mean (``"normal"``, ``"laplace"``; unit scale) or the
    success probability (``"bernoulli"``).  Argument validation is off: the
    callers check finiteness themselves, and validation costs time per batch.
    """
    check_distribution(default_dist)
    if default_dist == "bernoulli":
        return Bernoulli(probs=output, validate_args=False)
    if default_dist == "laplace":
        return Laplace(output, torch.ones_like(output), validate_args=False)
    return Normal(output, torch.ones_like(output), validate_args=False)


# Log-variances are clamped to this range: beyond it the standard deviation
# under- or overflows float32 (exp(-104) is 0), which made the KL term
# infinite in a default fit on a brain population; within it the posterior
# can still be as sharp as a standard deviation of 3e-7 or as wide as 3e6.
LOGVAR_RANGE = (-30.0, 30.0)


def posterior_std(logvar):
    """Standard deviation ``exp(logvar / 2)``, with ``logvar`` clamped to ``LOGVAR_RANGE``."""
    return torch.exp(0.5 * logvar.clamp(*LOGVAR_RANGE))


def posterior_distribution(mu, logvar):
    """The diagonal normal posterior q(z|x) given its mean and log-variance."""
    return Normal(mu, posterior_std(logvar), validate_args=False)


def kl_per_latent(q):
    """KL(q || N(0, I)) of each sample and latent dimension, for a diagonal normal q."""
    if not isinstance(q, Normal):
        raise TypeError(
            f"q must be a torch.distributions.Normal posterior; got {type(q).__name__}."
        )
    mean, scale = q.loc, q.scale
    return 0.5 * (scale.pow(2) + mean.pow(2) - 1.0 - 2.0 * torch.log(scale))


def _check_same_shape(p, data):
    # Broadcasting would silently score the wrong pairs of values.
    if tuple(p.batch_shape) != tuple(data.shape):
        raise ValueError(
            f"The decoder distribution has shape {tuple(p.batch_shape)} but the data "
            f"{tuple(data.shape)}; they must match."
        )


def _unsupported_decoder(p):
    return TypeError(
        "p must be a torch.distributions Normal, Laplace or Bernoulli; "
        f"got {type(p).__name__}."
    )


def _bernoulli_cross_entropy(p, data, reduction):
    # A Bernoulli built from logits is scored from its logits, which stays exact
    # where the probability rounds to 0 or 1; one built from probabilities uses
    # torch's binary cross-entropy, whose log is clamped at -100 at 0 and 1.
    if "logits" in vars(p) and "probs" not in vars(p):
        return F.binary_cross_entropy_with_logits(p.logits, data, reduction=reduction)
    return F.binary_cross_entropy(p.probs, data, reduction=reduction)


class BetaVAELoss:
    """The beta-VAE loss: reconstruction plus ``beta`` times the KL divergence.

    ``loss = rec_loss + beta * kl_loss`` where ``rec_loss`` is a
    reconstruction error summed over every element and divided by the batch
    size only (per image, not per pixel), and ``kl_loss`` is KL(q(z|x) ||
    N(0, I)) summed over latent dimensions and averaged over the batch.

    ``rec_loss`` is, per distribution (nidl's convention, kept here):

    - ``"normal"``: the sum of squared errors, which is *twice* the negative
      log-likelihood of a unit-variance Gaussian (less its constant,
      ``n_features / 2 * log(2 pi)`` per image). So ``loss`` is twice the
      negative ELBO of that unit-variance model with the KL weighted by
      ``beta / 2``: ``beta = 2`` is the plain VAE whose ELBO
      ``BetaVAETransformer.score`` reports, and ``beta = 4`` weighs the KL as
      ``beta = 2`` would on that ELBO. (Equivalently, ``loss`` is ``beta``
      times the negative ELBO of a Gaussian of variance ``beta / 2``, which
      is why the PCA start's noise variance is ``beta / 2``.)
    - ``"laplace"``: the sum of absolute errors, the negative log-likelihood
      of a unit-scale Laplace less ``n_features * log 2``; ``beta = 1`` is
      the plain VAE.
    - ``"bernoulli"``: the summed binary cross-entropy, the negative
      log-likelihood itself; ``beta = 1`` is the plain VAE.

    Larger values of ``beta`` favour statistically independent latents over
    reconstruction.

    Parameters
    ----------
    beta : float, default=4.0
        Weight of the KL divergence.
    default_dist : {"normal", "laplace", "bernoulli"}, default="normal"
        Decoder distribution used when the decoder output is a plain tensor.
        It defines the reconstruction loss: squared error (normal), absolute
        error (laplace) or binary cross-entropy (bernoulli).

    Raises
    ------
    ValueError
        If ``default_dist`` is not one of the allowed values, or ``beta`` is
        negative or not a number.

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import Normal
    >>> from sklearn_betavae import BetaVAELoss
    >>> x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> q = Normal(torch.zeros(2, 3), torch.ones(2, 3))
    >>> losses = BetaVAELoss(beta=4.0)(x, x + 1.0, q)
    >>> {name: round(value.item(), 3) for name, value in losses.items()}
    {'loss': 2.0, 'rec_loss': 2.0, 'kl_loss': 0.0}

    For ``"normal"``, ``rec_loss`` is twice the unit-variance Gaussian
    negative log-likelihood per image, less its constant:

    >>> import math
    >>> nll = -Normal(x + 1.0, 1.0).log_prob(x).sum().item() / len(x)
    >>> round(2 * (nll - x.shape[1] / 2 * math.log(2 * math.pi)), 3)
    2.0
    """

    def __init__(self, beta=4.0, default_dist="normal"):
        check_distribution(default_dist)
        if isinstance(beta, bool) or not isinstance(beta, Real) or not beta >= 0:
            raise ValueError(f"beta must be a non-negative real number; got {beta!r}.")
        self.beta = beta
        self.default_dist = default_dist

    def reconstruction_loss(self, p, data):
        """Per-image reconstruction loss.

        The negative log-likelihood of the data less its constant, except
        for a Normal: twice that (the sum of squared errors; see the class
        docstring).

        Parameters
        ----------
        p : torch.distributions.Normal, Laplace or Bernoulli
            Probabilistic decoder, the likelihood of the data given the code.
        data : torch.Tensor of shape (batch_size, ...)
            The observed data.

        Returns
        -------
        loss : torch.Tensor
            Scalar: summed over every element, divided by the batch size.
        """
        batch_size = data.shape[0]
        if isinstance(p, (Bernoulli, Normal, Laplace)):
            _check_same_shape(p, data)
            data = data.to(p.mean.dtype)
        if isinstance(p, Bernoulli):
            loss = _bernoulli_cross_entropy(p, data, reduction="sum")
        elif isinstance(p, Normal):
            loss = F.mse_loss(p.loc, data, reduction="sum")
        elif isinstance(p, Laplace):
            loss = F.l1_loss(p.loc, data, reduction="sum")
        else:
            raise _unsupported_decoder(p)
        return loss / batch_size

    def kl_normal_loss(self, q):
        """KL(q || N(0, I)) for a diagonal normal q.

        Parameters
        ----------
        q : torch.distributions.Normal
            Probabilistic encoder (estimated posterior).

        Returns
        -------
        kl : torch.Tensor
            Scalar: summed over latent dimensions, averaged over the batch.
        """
        return kl_per_sample(q).mean()

    def __call__(self, x, p, q):
        """Compute the loss terms for a batch.

        Parameters
        ----------
        x : torch.Tensor of shape (batch_size, ...)
            The observed data.
        p : torch.distributions object or torch.Tensor
            The decoder distribution, or a tensor read as the mean (normal,
            laplace; unit scale) or success probability (bernoulli) of
            ``default_dist``.
        q : torch.distributions.Normal
            The posterior q(z|x).

        Returns
        -------
        losses : dict of torch.Tensor
            ``"loss"``, ``"rec_loss"`` and ``"kl_loss"``.
        """
        if isinstance(p, torch.Tensor):
            p = decoder_distribution(p, self.default_dist)
        rec_loss = self.reconstruction_loss(p, x)
        kl_loss = self.kl_normal_loss(q)
        return {"loss": rec_loss + self.beta * kl_loss, "rec_loss": rec_loss, "kl_loss": kl_loss}

    def __repr__(self):
        return f"{type(self).__name__}(beta={self.beta!r}, default_dist={self.default_dist!r})"


def log_likelihood_per_sample(x, p):
    """log p(x | z) of each sample, summed over features, with every constant.

    Unlike the training loss this keeps the normalising constants, so it is a
    log-density comparable across models and values of beta.

    Parameters
    ----------
    x : torch.Tensor of shape (n_samples, n_features)
    p : torch.distributions Normal, Laplace or Bernoulli
        Decoder distribution evaluated at a code for each sample.

    Returns
    -------
    log_lik : torch.Tensor of shape (n_samples,)
    """
    if isinstance(p, Bernoulli):
        log_lik = -_bernoulli_cross_entropy(p, x, reduction="none")
    elif isinstance(p, Normal):
        log_lik = (-0.5 * (x - p.loc).pow(2) / p.scale.pow(2) - torch.log(p.scale)
                   - 0.5 * math.log(2 * math.pi))
    elif isinstance(p, Laplace):
        log_lik = -(x - p.loc).abs() / p.scale - torch.log(2 * p.scale)
    else:
        raise _unsupported_decoder(p)
    return log_lik.flatten(1).sum(1)


def unit_log_likelihood_per_sample(x, output, default_dist):
    """``log_likelihood_per_sample(x, decoder_distribution(output, default_dist))``,
    summed in float64, without building the distribution.

    For the unit-scale normal and laplace decoders this is two elementwise
    passes in the inputs' dtype and a float64 sum per row, instead of
    several full-size float64 temporaries: the bulk of ``score_samples``'s
    time otherwise (16 draws per row).
    """
    n_features = x.shape[1]
    if default_dist == "normal":
        # The norm is taken in float64, so squares beyond float32's range
        # (rows far from the data) do not overflow.
        squares = torch.linalg.vector_norm(x - output, dim=1, dtype=torch.float64).square()
        return -0.5 * squares - 0.5 * n_features * math.log(2 * math.pi)
    if default_dist == "laplace":
        return -(x - output).abs().sum(1, dtype=torch.float64) - n_features * math.log(2.0)
    return log_likelihood_per_sample(x.double(), decoder_distribution(output.double(), default_dist))


def kl_per_sample(q):
    """KL(q || N(0, I)) of each sample, summed over latent dimensions."""
    return kl_per_latent(q).flatten(1).sum(1)
