"""BetaVAETransformer: a scikit-learn transformer around a skorch beta-VAE net."""

import copy
from functools import partial
from numbers import Integral, Real

import numpy as np
import torch
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit
from skorch.utils import noop
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from torch import nn

from ._data import RowDataset, SliceLoader, iter_chunks, standardisation
from ._loss import (
    DISTRIBUTIONS,
    BetaVAELoss,
    decoder_distribution,
    kl_per_sample,
    log_likelihood_per_sample,
    posterior_distribution,
)
from ._modules import VAEModule
from ._net import BetaVAENet
from ._validation import (
    check_hidden_layer_sizes,
    check_module_outputs,
    check_standardize,
    check_unit_interval,
    check_user_module,
    check_validation_split,
    resolve_device,
)

# Inference runs in float64 chunks of about this many values (64 MB): enough
# to keep the matrix products efficient, small enough for huge memmaps.
_INFERENCE_CHUNK_VALUES = 2**23


def _elbo_noise(n_components, n_pairs=8):
    """Fixed antithetic standard-normal draws for the Monte Carlo ELBO."""
    generator = torch.Generator().manual_seed(0)
    eps = torch.randn(n_pairs, n_components, generator=generator, dtype=torch.float64)
    return torch.cat([eps, -eps])


class BetaVAETransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Beta-VAE as a scikit-learn transformer: a disentangled latent code of X.

    An MLP encoder maps each sample to a diagonal normal posterior q(z|x) over
    ``n_components`` latents; a mirrored MLP decoder maps codes back to the
    input space. Training minimises :class:`BetaVAELoss` (reconstruction plus
    ``beta`` times the KL divergence to N(0, I)) with Adam through a skorch
    net, available after fitting as ``net_``.

    Scale matters for a VAE: its reconstruction loss is a sum over features
    with unit observation variance, so on data with a small spread the KL term
    dominates and latents collapse. With ``standardize="auto"`` (the default)
    each feature is therefore z-scored inside ``fit`` for the normal and
    laplace decoders, and ``inverse_transform``, ``sample`` and ``score`` undo
    it, so everything is in the input's own units.

    Parameters
    ----------
    beta : float, default=4.0
        Weight of the KL term. ``1`` is a plain VAE; larger values trade
        reconstruction for more independent latents.
    default_dist : {"normal", "laplace", "bernoulli"}, default="normal"
        Decoder distribution: squared-error, absolute-error or binary
        cross-entropy reconstruction. ``"bernoulli"`` needs X in [0, 1].
    device : str or torch.device, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or a ``torch.device``. Outputs are always NumPy on the CPU,
        and a model fitted on a GPU unpickles on a machine without one.
    n_components : int, default=10
        Number of latent dimensions.
    hidden_layer_sizes : tuple of int, default=(256, 128)
        Widths of the encoder's hidden layers; the decoder mirrors them. An
        empty tuple gives a linear encoder and decoder.
    max_iter : int, default=200
        Number of epochs (passes over the training data).
    batch_size : int, default=128
        Mini-batch size, clipped to the number of training samples.
    learning_rate_init : float, default=1e-3
        Adam's learning rate.
    beta_warmup : float, default=0.25
        Share of ``max_iter`` over which the KL weight ramps linearly up to
        ``beta``: ``beta * k / n`` at epoch k of the n warm-up epochs (KL
        annealing). On digits at ``beta=4`` it kept 6-7 of 8 latents active
        instead of 4 and lowered the held-out reconstruction error by 4-7%,
        for 1.0-3.6 nats less held-out ELBO (``benchmarks/README.md``). ``0``
        trains at full ``beta`` throughout. The recorded losses always use the
        full ``beta``.
    standardize : "auto" or bool, default="auto"
        Z-score each feature before training (undone on the way out).
        ``"auto"`` means True for the normal and laplace decoders and False
        for bernoulli, whose data must stay in [0, 1]; True with bernoulli is
        an error.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data and stop when
        its loss has not improved by ``tol`` (relative) for
        ``n_iter_no_change`` epochs, keeping the best epoch's weights.
    validation_fraction : float, default=0.1
        Share of the training data held out when ``early_stopping`` is True.
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs.
    tol : float, default=1e-4
        Relative improvement of the validation loss that counts as progress.
    encoder : torch.nn.Module or None, default=None
        Your own encoder, mapping a float32 batch ``(batch, n_features)`` to a
        pair ``(mu, logvar)`` of shape ``(batch, n_components)`` each. It is
        deep-copied in ``fit``; your instance is never trained.
    decoder : torch.nn.Module or None, default=None
        Your own decoder, mapping ``(batch, n_components)`` codes to
        ``(batch, n_features)``: the mean (normal, laplace) or the success
        probability (bernoulli). Deep-copied in ``fit``.
    callbacks : list or None, default=None
        Extra skorch callbacks (e.g. ``skorch.callbacks.Checkpoint``),
        deep-copied in ``fit``.
    random_state : int, RandomState instance or None, default=None
        Seeds the built-in modules' weight initialisation, shuffling, the
        reparameterisation noise and the validation split (your own
        ``encoder``/``decoder`` keep the weights they came with). The global
        torch RNG states are left as they were. With an int, fits on the CPU
        are bit-identical.
    verbose : int, default=0
        ``0`` is silent; ``1`` or more prints skorch's table of losses per
        epoch.

    Attributes
    ----------
    net_ : BetaVAENet
        The trained skorch net; ``net_.history`` holds ``train_loss``,
        ``train_rec_loss``, ``train_kl_loss`` (and ``valid_*`` with early
        stopping) per epoch.
    device_ : torch.device
        The device the network is on: the one ``fit`` trained on, or the CPU
        after loading a GPU-fitted model on a machine without CUDA.
    default_dist_ : str
        The decoder distribution used in ``fit`` (later methods use it even
        if ``default_dist`` is changed with ``set_params``).
    mean_ : ndarray of shape (n_features_in_,)
        Per-feature mean removed before training (zeros without
        standardisation).
    scale_ : ndarray of shape (n_features_in_,)
        Per-feature scale divided out before training (ones without
        standardisation; constant features get 1).
    n_iter_ : int
        Number of epochs run.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit``, when X has string column
        names.

    See Also
    --------
    BetaVAELoss : The training criterion.
    sklearn.decomposition.PCA : The linear baseline.

    Notes
    -----
    ``transform``, ``inverse_transform`` and ``score_samples`` run a float64
    copy of the network in chunks, so results agree to float64 rounding
    (about 1e-15 relative) however rows are batched, and a ``numpy.memmap``
    is never loaded whole. ``transform`` returns float64 whatever the input
    dtype. ``fit`` trains on a standardised float32 copy of X (see ``fit``
    for the copies it makes).

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_betavae import BetaVAETransformer
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = BetaVAETransformer(beta=1.0, device="cpu", n_components=4,
    ...                          max_iter=5, random_state=0)
    >>> Z = vae.fit_transform(X[:200])
    >>> Z.shape
    (200, 4)
    >>> vae.inverse_transform(Z).shape
    (200, 64)
    >>> bool(vae.score(X[200:300]) < 0)
    True
    """

    _parameter_constraints: dict = {
        "beta": [Interval(Real, 0, None, closed="left")],
        "default_dist": [StrOptions(set(DISTRIBUTIONS))],
        "device": [str, torch.device],
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "beta_warmup": [Interval(Real, 0, 1, closed="both")],
        "standardize": [StrOptions({"auto"}), "boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "encoder": [nn.Module, None],
        "decoder": [nn.Module, None],
        "callbacks": [list, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        beta=4.0,
        default_dist="normal",
        device="auto",
        *,
        n_components=10,
        hidden_layer_sizes=(256, 128),
        max_iter=200,
        batch_size=128,
        learning_rate_init=1e-3,
        beta_warmup=0.25,
        standardize="auto",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        encoder=None,
        decoder=None,
        callbacks=None,
        random_state=None,
        verbose=0,
    ):
        self.beta = beta
        self.default_dist = default_dist
        self.device = device
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.beta_warmup = beta_warmup
        self.standardize = standardize
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.encoder = encoder
        self.decoder = decoder
        self.callbacks = callbacks
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the beta-VAE on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, never modified. Copies made: one float64 array while
            standardising (the data must be C-ordered float32/float64 or are
            converted first) and the float32 array trained on; without
            standardisation a C-ordered float32 X is used as is.
        y : None
            Ignored.

        Returns
        -------
        self : BetaVAETransformer
            The fitted estimator.

        Raises
        ------
        FloatingPointError
            If the training loss stops being finite; the message names the
            epoch and batch, and the estimator is left unfitted.
        """
        # Parameter checks first: a refit that fails leaves no half-new state.
        hidden_layer_sizes = check_hidden_layer_sizes(self.hidden_layer_sizes)
        device = resolve_device(self.device)
        standardize = check_standardize(self.standardize, self.default_dist)
        try:
            self._fit(X, hidden_layer_sizes, device, standardize)
        except Exception:
            self._forget_fit()
            raise
        return self

    def transform(self, X):
        """Encode X as posterior means.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to encode, processed in chunks.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components), dtype float64
            Means of q(z|x); deterministic.
        """
        X = self._validate_X(X)
        module = self._inference_module()
        return self._map_chunks(X, lambda x: self._posterior(module, x)[0])

    def inverse_transform(self, X):
        """Decode latent codes back to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Latent codes, e.g. the output of ``transform``.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features_in_), dtype float64
            Decoder means (normal, laplace) or success probabilities
            (bernoulli), in the input's units.
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=[np.float64, np.float32], input_name="X")
        if Z.shape[1] != self._n_features_out:
            raise ValueError(
                f"inverse_transform expects latent codes with {self._n_features_out} "
                f"columns (n_components); got X with {Z.shape[1]} columns."
            )
        module = self._inference_module()
        return self._map_chunks(Z, lambda z: self._unstandardised(module.decoder(z)))

    def score_samples(self, X):
        """Evidence lower bound (ELBO) of each sample, in the input's units.

        ``E_q[log p(x | z)] - KL(q(z|x) || N(0, I))`` with every normalising
        constant, including the Jacobian of the standardisation. The
        expectation is a Monte Carlo average over 16 codes
        ``z = mu + sigma * eps`` with 8 fixed antithetic pairs ``+-eps``, the
        same for every sample and every call: the value is deterministic,
        does not depend on the order or batching of rows, and is an unbiased
        estimate of the ELBO. It does not depend on ``beta``, so it compares
        models fitted with different values of beta.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        elbo : ndarray of shape (n_samples,)
            Higher is better.
        """
        X = self._validate_X(X)
        module = self._inference_module()
        log_jacobian = float(np.sum(np.log(self.scale_)))
        noise = _elbo_noise(self._n_features_out).to(torch.device(self.net_.device))

        def elbo(x):
            x = self._standardised(x)
            mu, logvar = module.encoder(x)
            std = torch.exp(0.5 * logvar)
            log_lik = sum(
                log_likelihood_per_sample(
                    x, decoder_distribution(module.decoder(mu + std * eps), self.default_dist_)
                )
                for eps in noise
            ) / len(noise)
            return log_lik - kl_per_sample(posterior_distribution(mu, logvar)) - log_jacobian

        return self._map_chunks(X, elbo)

    def score(self, X, y=None):
        """Mean evidence lower bound per sample (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
            Mean of ``score_samples(X)``; usable by ``GridSearchCV`` over
            ``beta`` with no ``scoring`` argument.
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """Draw codes from the prior N(0, I) and decode them.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState instance or None, default=None

        Returns
        -------
        X : ndarray of shape (n_samples, n_features_in_)
            Decoder means (probabilities for bernoulli) in the input's units.
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
        rng = check_random_state(random_state)
        return self.inverse_transform(rng.standard_normal((n_samples, self._n_features_out)))

    # Private helpers -----------------------------------------------------

    def _fit(self, X, hidden_layer_sizes, device, standardize):
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C")
        if self.default_dist == "bernoulli":
            check_unit_interval(X, self.default_dist)
        if self.early_stopping:
            check_validation_split(self.validation_fraction, X.shape[0])
        encoder = None if self.encoder is None else check_user_module(self.encoder, "encoder")
        decoder = None if self.decoder is None else check_user_module(self.decoder, "decoder")

        mean, scale = standardisation(X, standardize)
        X_train = RowDataset(((X - mean) / scale).astype(np.float32) if standardize
                             else X.astype(np.float32, copy=False))
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        net = BetaVAENet(
            module=VAEModule,
            module__n_features=X.shape[1],
            module__n_components=self.n_components,
            module__hidden_layer_sizes=hidden_layer_sizes,
            module__default_dist=self.default_dist,
            module__encoder=encoder,
            module__decoder=decoder,
            # skorch accepts criterion__* arguments only for nn.Module criteria.
            criterion=partial(BetaVAELoss, beta=self.beta, default_dist=self.default_dist),
            optimizer=torch.optim.Adam,
            lr=self.learning_rate_init,
            max_epochs=self.max_iter,
            warmup_epochs=int(round(self.beta_warmup * self.max_iter)),
            batch_size=min(self.batch_size, X.shape[0]),
            dataset=RowDataset,
            iterator_train=SliceLoader,
            iterator_train__shuffle=True,
            iterator_valid=SliceLoader,
            train_split=ValidSplit(self.validation_fraction, random_state=seed)
            if self.early_stopping
            else None,
            callbacks=self._training_callbacks(),
            verbose=self.verbose,
            device=str(device),
        )
        # Seed private copies of the generators used (the CPU one, and the
        # training GPU's), so the caller's RNG states are the same after fit.
        cuda_devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.random.default_generator.manual_seed(seed)
            for cuda_device in cuda_devices:
                with torch.cuda.device(cuda_device):
                    torch.cuda.manual_seed(seed)
            net.initialize()
            check_module_outputs(net.module_, X.shape[1], self.n_components, self.default_dist)
            # partial_fit trains the net just initialised (and checked) above.
            net.partial_fit(X_train, None)

        self.net_ = net
        self.device_ = device
        self.default_dist_ = self.default_dist
        self.mean_, self.scale_ = mean, scale
        self.n_iter_ = len(net.history)
        self._n_features_out = self.n_components

    def _training_callbacks(self):
        callbacks = copy.deepcopy(self.callbacks) or []
        if self.early_stopping:
            callbacks.append(
                (
                    "early_stopping",
                    EarlyStopping(
                        monitor="valid_loss",
                        patience=self.n_iter_no_change,
                        threshold=self.tol,
                        threshold_mode="rel",
                        load_best=True,
                        sink=print if self.verbose else noop,
                    ),
                )
            )
        return callbacks

    def _forget_fit(self):
        for name in [name for name in vars(self) if name.endswith("_")]:
            delattr(self, name)
        vars(self).pop("_n_features_out", None)

    def _validate_X(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        if self.default_dist_ == "bernoulli":
            check_unit_interval(X, self.default_dist_)
        return X

    def _inference_module(self):
        # float64 makes outputs independent of how rows are batched (float32
        # matrix products differ in the last bits between batch sizes).
        return copy.deepcopy(self.net_.module_).double().eval()

    def _posterior(self, module, x):
        """(mu, logvar) of q(z|x) for a chunk of raw (unstandardised) rows."""
        return module.encoder(self._standardised(x))

    def _map_chunks(self, X, fn):
        """Apply ``fn`` to float64 row chunks of X; concatenate on the CPU."""
        device = torch.device(self.net_.device)
        chunk_rows = max(1, _INFERENCE_CHUNK_VALUES // max(1, X.shape[1]))
        with torch.inference_mode():
            out = [fn(chunk).cpu().numpy() for chunk in iter_chunks(X, chunk_rows, torch.float64, device)]
        return np.concatenate(out)

    def _standardised(self, x):
        mean = torch.as_tensor(self.mean_, device=x.device)
        scale = torch.as_tensor(self.scale_, device=x.device)
        return (x - mean) / scale

    def _unstandardised(self, x):
        mean = torch.as_tensor(self.mean_, device=x.device)
        scale = torch.as_tensor(self.scale_, device=x.device)
        return x * scale + mean

    def __setstate__(self, state):
        super().__setstate__(state)
        # skorch maps a GPU-fitted net to the CPU when CUDA is missing; follow it.
        if "net_" in state:
            self.device_ = torch.device(self.net_.device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.input_tags.positive_only = self.default_dist == "bernoulli"
        tags.transformer_tags.preserves_dtype = ["float64"]
        tags.target_tags.required = False
        return tags

