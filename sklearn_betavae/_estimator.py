"""BetaVAETransformer: a scikit-learn transformer around a skorch beta-VAE net."""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_array, check_is_fitted, validate_data
from skorch.callbacks import EarlyStopping, ProgressBar
from skorch.utils import noop
from torch import nn

from ._covariates import CovariateEncoding
from ._data import resident_rows, standardization, training_dataset
from ._device import same_device, training_device, usable_device_param
from ._distributed import is_main_process, main_process_print, shared_seed
from ._inference import FittedModel
from ._loss import DISTRIBUTIONS
from ._normative import NormativeReference, reference_split, strata_of
from ._pca_start import pca_start
from ._persistence import FORMAT_VERSION, load_estimator, save_estimator
from ._training import (
    Architecture,
    TrainingSettings,
    build_net,
    configure_training,
    outside_inference_mode,
    run_training,
    seed_state,
    without_inference_tensors,
)
from ._validation import (
    NumberInterval,
    check_hidden_layer_sizes,
    check_init,
    check_input_lr_scale,
    check_module_outputs,
    check_numbers,
    check_standardize,
    check_unit_interval,
    check_validation_split,
    input_lr_factor,
    resolve_max_iter,
)

# The key of the format version in a pickled estimator's state.
_PICKLE_FORMAT_KEY = "_sklearn_betavae_format"


def _covariate_rows(covariates, rows):
    if hasattr(covariates, "iloc"):
        return covariates.iloc[rows]
    if hasattr(covariates, "columns"):
        return covariates[rows]  # polars selects rows by an integer array
    return np.asarray(covariates)[rows]


def _is_progress_bar(callback):
    """Whether a ``callbacks`` entry (instance, class or (name, either)) is a ProgressBar."""
    callback = callback[1] if isinstance(callback, tuple) else callback
    return isinstance(callback, ProgressBar) or (
        isinstance(callback, type) and issubclass(callback, ProgressBar)
    )


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
    the normal and laplace decoders therefore train on centred data divided
    by one common scale, which keeps PCA's geometry: the network starts at
    PCA of the data as they are. ``inverse_transform``, ``sample`` and
    ``score`` undo it, so everything is in the input's own units. For
    features in different units, z-score each (``standardize=True``), as
    you would put a ``StandardScaler`` before ``PCA``.

    Parameters
    ----------
    beta : float, default=4.0
        Weight of the KL term; larger values trade reconstruction for more
        independent latents. The normal decoder's reconstruction loss is the
        sum of squared errors, twice the unit-variance Gaussian negative
        log-likelihood, so there ``beta = 2`` is the plain VAE whose ELBO
        ``score`` reports (and the default 4 weighs the KL twice as much as
        that ELBO does); with the laplace and bernoulli decoders ``beta = 1``
        is (see :class:`BetaVAELoss`).
    default_dist : {"normal", "laplace", "bernoulli"}, default="normal"
        Decoder distribution: squared-error, absolute-error or binary
        cross-entropy reconstruction. ``"bernoulli"`` needs X in [0, 1].
    device : str or torch.device, default="auto"
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
        ``"cuda:N"`` or a ``torch.device``. Outputs are always NumPy on the CPU,
        and a model fitted on a GPU unpickles and loads on a machine
        without one, where its ``device`` becomes ``"cpu"``.
    n_components : int, default=10
        Number of latent dimensions.
    hidden_layer_sizes : tuple of int, default=(256, 128)
        Widths of the encoder's hidden layers; the decoder mirrors them. An
        empty tuple gives a linear encoder and decoder.
    max_iter : int or "auto", default="auto"
        Number of epochs (passes over the training data); an epoch is
        ``ceil(n_samples / batch_size)`` Adam steps, so 300 rows at the
        default batch size give 3 steps an epoch. Training runs exactly that
        many epochs unless ``early_stopping`` is True, which may stop it
        sooner; ``tol`` and ``n_iter_no_change`` apply only to that
        validation loss, never to the training loss. ``"auto"`` is 200, or
        10 when X has fewer rows than features (few, wide rows, such as the
        brain maps of a few hundred subjects): with so few rows the network,
        which starts at PCA, soon begins to memorise them, and the short
        budget keeps its held-out fit level with PCA's. Set an integer (or
        search it with ``GridSearchCV``) when your held-out data say
        otherwise. Measurements: :doc:`/user_guide/training`.
    batch_size : int, default=128
        Mini-batch size, clipped to the number of training samples.
    learning_rate_init : float, default=1e-3
        Adam's learning rate (for the built-in encoder's input weights,
        times ``input_lr_scale``).
    input_lr_scale : "auto" or float, default="auto"
        Factor on ``learning_rate_init`` for the weights of the built-in
        encoder that read the input (its first hidden layer and its linear
        path), which have one column per feature; the other weights keep
        ``learning_rate_init``. ``"auto"`` is ``min(1, 64 / n_features)``,
        the maximal-update rule for a layer's fan-in: Adam moves every weight
        by about the learning rate at each step, so a sample's code moves by
        about ``lr * sum_i |x_i|``, and the scale keeps that move the size it
        has on 64 features (so it changes nothing up to 64), which keeps a
        fit on thousands of features from being thrown off its start. ``1``
        gives every weight the same rate, as fits had before this option; a
        float is a factor of your own. With your own ``encoder`` it must be
        ``"auto"`` (which then means 1) or 1. Measurements:
        :doc:`/user_guide/training`.
    beta_warmup : float, default=0.25
        Share of ``max_iter`` over which the KL weight ramps linearly up to
        ``beta``: ``beta * k / n`` at epoch k of the n warm-up epochs (KL
        annealing), which keeps more latents in use at some cost in
        held-out ELBO. ``0`` trains at full ``beta`` throughout. The
        recorded losses always use the full ``beta``. Measurements:
        :doc:`/user_guide/choosing`.
    standardize : "auto", "global" or bool, default="auto"
        How to scale X before training (undone on the way out). True
        z-scores each feature. ``"global"`` centres each feature but divides
        all of them by one number, the root mean feature variance: features
        keep the relative variances that PCA sees, so quiet ones (voxels
        outside the regions that vary) weigh less. False trains on X as
        given. ``"auto"`` means False for the bernoulli decoder, whose data
        must stay in [0, 1] (True or ``"global"`` with bernoulli is an
        error), and ``"global"`` for the normal and laplace decoders: use
        True for tabular features in different units. Measurements:
        :doc:`/user_guide/standardization`.
    init : {"auto", "pca", "random"}, default="auto"
        How a new network starts. ``"pca"`` (as ``TSNE(init="pca")``)
        starts the built-in network at the optimum of this loss for a linear
        model, probabilistic PCA with noise variance ``beta / 2`` (see
        Notes), from the PCA of the standardized training rows (the
        early-stopping validation rows left out), computed without a copy
        of X. Components whose variance is below ``beta / 2`` start
        switched off, at the prior. The encoder and decoder each have a
        linear path beside the MLP, and the MLP's last layer starts at zero,
        so training begins at pPCA and learns what the nonlinear part adds.
        ``"random"`` starts the same network from PyTorch's default
        initialisation. ``"auto"`` is ``"pca"`` for the built-in normal
        decoder and ``"random"`` otherwise (the laplace and bernoulli losses
        have no closed-form linear optimum; ``"pca"`` with them, or with
        your own ``encoder`` or ``decoder``, is an error). ``warm_start``
        never re-initialises. With ``covariates``, the PCA is that of the
        rows' residuals after their least-squares regression on the encoded
        covariates, and the decoder's covariate weights start at the
        regression's coefficients. How the PCA is computed:
        :doc:`/user_guide/estimator`.
    categorical_covariates : "from_dtype" or array-like, default="from_dtype"
        Which columns of the ``covariates`` passed to ``fit`` are
        categorical (one-hot encoded over the levels seen in ``fit``); the
        others are continuous (centred and scaled). ``"from_dtype"``: the
        columns of a DataFrame with a categorical, string, object or
        boolean dtype, or every column of an array of strings, objects or
        booleans (a numeric array is all continuous). Else column indices,
        column names (of a DataFrame) or a boolean mask over the columns.
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
    reference_fraction : float, default=0.0
        Share of the rows ``fit`` holds out of training, as the reference
        controls on which ``deviation_scores`` measures each feature's
        spread (0: none; normative modelling needs one, for example 0.2).
        Drawn at random within each combination of categorical covariates
        (site and sex), so every level stays in training. See
        :doc:`/user_guide/normative`.
    encoder : torch.nn.Module or None, default=None
        Your own encoder, mapping a float32 batch ``(batch, n_features)`` to a
        pair ``(mu, logvar)`` of shape ``(batch, n_components)`` each, with
        float32 weights (``module.float()``; float64 modules are refused). It
        is deep-copied in ``fit``; your instance is never trained.
    decoder : torch.nn.Module or None, default=None
        Your own decoder, mapping ``(batch, n_components)`` codes to
        ``(batch, n_features)``: the mean (normal, laplace) or the success
        probability (bernoulli), with float32 weights. Deep-copied in ``fit``.
    callbacks : list or None, default=None
        Extra skorch callbacks (instances, classes or ``(name, callback)``
        pairs): for instance ``Checkpoint(use_safetensors=True,
        f_optimizer=None, ...)`` with ``LoadInitState`` to save progress
        during a long fit and pick it up again after a crash. As in skorch,
        ``fit`` uses the instances given, not copies: each fit calls their
        ``initialize()``, and what they record lands on them, so a callback
        may hold a file or a lock. (``clone``, and so ``GridSearchCV``,
        deep-copies them like any parameter).
    warm_start : bool, default=False
        If True and the estimator is fitted, ``fit`` trains the fitted network
        for ``max_iter`` more epochs (continuing Adam's state, the random
        stream, the KL warm-up schedule and the standardization of the first
        fit) instead of starting anew. ``beta``, ``learning_rate_init``,
        ``batch_size``, ``max_iter``, early stopping, ``callbacks`` and
        ``verbose`` may change between fits; ``n_components``,
        ``hidden_layer_sizes``, ``default_dist`` and ``standardize`` may not.
        The fitted network (its ``encoder`` and ``decoder``), its device, its
        KL warm-up schedule and its validation split are kept; a different
        ``device`` is an error (move a model with ``save`` and ``load``).
        With ``beta_warmup=0`` on the CPU, ``fit`` for 5 + 5 epochs gives the
        same network as one ``fit`` for 10.
    accelerator : accelerate.Accelerator or None, default=None
        Train through Hugging Face Accelerate (the ``dist`` extra): run the
        same script on every process (``accelerate launch --multi_gpu
        --num_processes N script.py``; see ``examples/train_with_accelerate.py``
        for CPU processes and several nodes) and each process fits on its share of every epoch's
        batches, with the gradients averaged across processes (data-parallel,
        on several GPUs or nodes, or CPU processes); the accelerator chooses
        the device, so ``device`` must be ``"auto"`` or that device.
        ``batch_size`` is per process (a step sees N batches), and
        ``random_state`` is taken from process 0. Every process ends with the
        same fitted model and history. Not saved by ``save`` (a loaded model
        has None).
    random_state : int, RandomState instance or None, default=None
        Seeds the built-in modules' weight initialisation, the randomized
        PCA of the PCA start, shuffling, the reparameterisation noise and
        the validation split (your own
        ``encoder``/``decoder`` keep the weights they came with). These
        draws come from ``torch.Generator`` objects of the fit's own: torch's
        global generators are never used, and fits in several threads at
        once do not disturb each other. With an int, fits on the CPU are
        bit-identical.
    verbose : int, default=0
        ``0`` is silent; ``1`` prints skorch's table of losses per epoch;
        ``2`` or more also shows a progress bar of the batches of each epoch
        (skorch's ``ProgressBar``, on standard error; with an accelerator,
        on the main process only).

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
        standardization).
    scale_ : ndarray of shape (n_features_in_,)
        Per-feature scale divided out before training (ones without
        standardization; constant features get 1).
    n_iter_ : int
        Number of epochs run, over all warm-started fits.
    n_features_in_ : int
        Number of features seen during ``fit``.
    reference_indices_ : ndarray of shape (n_reference,) or None
        The rows of the training data held out as the reference
        (``reference_fraction``), or None.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit``, when X has string column
        names.

    See Also
    --------
    BetaVAELoss : The training criterion.
    sklearn.decomposition.PCA : The linear baseline.

    Notes
    -----
    The PCA start (``init="pca"``). With the normal decoder the loss
    ``||x - f(z)||^2 + beta * KL`` is, up to a constant, ``beta`` times the
    negative ELBO of a Gaussian likelihood with noise variance
    ``s2 = beta / 2``. For a linear decoder its optimum is probabilistic PCA
    with that noise variance: with ``lambda_i`` and ``u_i`` the covariance
    eigenvalues and eigenvectors of the standardized training rows, the
    decoder column of latent i is ``sqrt(lambda_i - s2) * u_i``, the
    posterior mean ``sqrt(lambda_i - s2) / lambda_i * u_i^T (x - m)`` and the
    posterior log-variance ``log(s2 / lambda_i)``; a component with
    ``lambda_i <= s2`` starts switched off (a zero decoder column and the
    prior as posterior). ``hidden_layer_sizes=()`` is this linear model,
    whose decoder spans PCA's subspace; ``inverse_transform(transform(X))``
    is then PCA's reconstruction with component i shrunk by the factor
    ``(lambda_i - s2) / lambda_i``, the posterior mean's shrinkage.

    Long fits are protected against losing work: a loss that stops being
    finite raises ``FloatingPointError`` but keeps the weights of the last
    epoch that ended with finite ones (``n_iter_`` and the history are cut
    back to it); a ``KeyboardInterrupt`` (Ctrl-C) keeps the epochs completed
    so far, with a warning, and the estimator can continue with
    ``warm_start=True``. ``save`` and ``load`` store a fitted model without
    pickle.

    ``transform``, ``inverse_transform`` and ``score_samples`` run the fitted
    network itself (no copy of its weights) in chunks, in float32 as it was
    trained, with the standardization, likelihood and KL in float64: results
    agree to the network's float32 rounding (about 1e-7 of the output's
    magnitude, not bit for bit) however rows are batched, and a
    ``numpy.memmap`` is never loaded whole. ``transform`` returns float64 whatever the input
    dtype. ``fit`` trains in float32 and copies X at most once (see ``fit``).

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
        "beta": [NumberInterval(Real, 0, None, closed="left")],
        "default_dist": [StrOptions(set(DISTRIBUTIONS))],
        "device": [str, torch.device],
        "n_components": [NumberInterval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", NumberInterval(Integral, 1, None, closed="left")],
        "max_iter": [NumberInterval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "batch_size": [NumberInterval(Integral, 1, None, closed="left")],
        "learning_rate_init": [NumberInterval(Real, 0, None, closed="neither")],
        "input_lr_scale": [StrOptions({"auto"}), NumberInterval(Real, 0, None, closed="neither")],
        "beta_warmup": [NumberInterval(Real, 0, 1, closed="both")],
        "standardize": [StrOptions({"auto", "global"}), "boolean"],
        "init": [StrOptions({"auto", "pca", "random"})],
        "categorical_covariates": [StrOptions({"from_dtype"}), "array-like"],
        "early_stopping": ["boolean"],
        "validation_fraction": [NumberInterval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [NumberInterval(Integral, 1, None, closed="left")],
        "tol": [NumberInterval(Real, 0, None, closed="left")],
        "reference_fraction": [NumberInterval(Real, 0, 1, closed="left")],
        "encoder": [nn.Module, None],
        "decoder": [nn.Module, None],
        "callbacks": [list, None],
        "warm_start": ["boolean"],
        "accelerator": [HasMethods(["prepare", "backward", "unwrap_model"]), None],
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
        max_iter="auto",
        batch_size=128,
        learning_rate_init=1e-3,
        input_lr_scale="auto",
        beta_warmup=0.25,
        standardize="auto",
        init="auto",
        categorical_covariates="from_dtype",
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        reference_fraction=0.0,
        encoder=None,
        decoder=None,
        callbacks=None,
        warm_start=False,
        accelerator=None,
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
        self.input_lr_scale = input_lr_scale
        self.beta_warmup = beta_warmup
        self.standardize = standardize
        self.init = init
        self.categorical_covariates = categorical_covariates
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.reference_fraction = reference_fraction
        self.encoder = encoder
        self.decoder = decoder
        self.callbacks = callbacks
        self.warm_start = warm_start
        self.accelerator = accelerator
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=True)
    @outside_inference_mode
    def fit(self, X, y=None, *, covariates=None):
        """Train the beta-VAE on X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, never modified. A C-ordered float32 array (or
            memmap) is trained on in place, standardized batch by batch: no
            copy. Any other X is converted once to a C-ordered float32 array
            (standardized on the way, in float64 arithmetic); the statistics
            and the conversion work in row chunks of about 8 million values,
            so no other full-size temporary is made.
        y : None
            Ignored.
        covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
            Per-sample covariates (age, sex, scanner site) that condition
            the network, a conditional beta-VAE: the encoder reads them
            beside X and the decoder beside the code, so the code need not
            carry what they explain. Continuous ones are centred and scaled,
            categorical ones (see ``categorical_covariates``) one-hot
            encoded over the levels seen here; this encoding is kept and
            applied by every later method, which then needs covariates too.
            A DataFrame's column names are kept and checked later. In a
            ``Pipeline`` they arrive by metadata routing
            (``set_fit_request(covariates=True)``).

        Returns
        -------
        self : BetaVAETransformer
            The fitted estimator.

        Raises
        ------
        FloatingPointError
            If the training loss stops being finite (the message names the
            epoch and batch), or the weights are not finite when training
            ends (the last update overflowed; the message names the epoch).
            The estimator keeps the weights of the last epoch
            that ended with finite ones, or is left unfitted (warm-started:
            as it was) when there are none.
        KeyboardInterrupt
            If interrupted before the first epoch ends (the estimator is left
            unfitted). Later, an interrupt ends training with a warning and
            keeps the epochs completed.

        Notes
        -----
        ``fit`` trains inside ``torch.no_grad()`` and
        ``torch.inference_mode()`` blocks alike: it switches them off for
        its duration.
        """
        # Parameter checks first: a refit that fails on them changes nothing.
        check_hidden_layer_sizes(self.hidden_layer_sizes)
        device = training_device(self.device, self.accelerator)
        check_standardize(self.standardize, self.default_dist)
        check_input_lr_scale(self.input_lr_scale, self.encoder)
        if self.warm_start and hasattr(self, "net_"):
            self._check_continuable(device)
            self._fit(X, device, covariates=covariates)
            return self
        init = check_init(self.init, self.default_dist, self.encoder, self.decoder)
        # A new fit replaces the old model whole, even when it fails.
        self._forget_fit()
        try:
            self._fit(X, device, init, covariates)
        except BaseException:
            if not getattr(self, "n_iter_", 0):
                self._forget_fit()
            raise
        return self

    def fit_transform(self, X, y=None, *, covariates=None):
        """Fit to X, then encode it.

        The same as ``fit(X, covariates=covariates).transform(X,
        covariates=covariates)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, as in ``fit``.
        y : None
            Ignored.
        covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
            Per-sample covariates, as in ``fit``.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components), dtype float64
            Means of q(z|x) of the training rows.
        """
        return self.fit(X, covariates=covariates).transform(X, covariates=covariates)

    def transform(self, X, *, covariates=None):
        """Encode X as posterior means.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data to encode, processed in chunks.
        covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
            Per-sample covariates, as passed to ``fit`` (the same columns,
            in the same order; see ``fit``). Required when the model was
            fitted with covariates, refused when it was not.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components), dtype float64
            Means of q(z|x); deterministic.

        Raises
        ------
        ValueError
            For rows so far outside the training data (finite, say 1e308)
            that the network's float32 range overflows, naming the first such
            row; and for X of long doubles beyond float64's range.
        """
        X = self._validate_X(X)
        return self._fitted_model(covariates, len(X), "transform").encode(X)

    def inverse_transform(self, X, *, covariates=None):
        """Decode latent codes back to the input space.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Latent codes, e.g. the output of ``transform``.
        covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
            The covariates of each code's sample, as passed to ``fit`` (the same columns,
            in the same order; see ``fit``). Required when the model was
            fitted with covariates, refused when it was not.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features_in_), dtype float64
            Decoder means (normal, laplace) or success probabilities
            (bernoulli), in the input's units.

        Raises
        ------
        ValueError
            For codes so far from the prior (say 1e308) that the decoder's
            float32 range overflows, naming the first such row.
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=[np.float64, np.float32], input_name="X")
        if Z.shape[1] != self._n_features_out:
            raise ValueError(
                f"inverse_transform expects latent codes with {self._n_features_out} "
                f"columns (n_components); got X with {Z.shape[1]} columns."
            )
        return self._fitted_model(covariates, len(Z), "inverse_transform").decode(Z)

    def score_samples(self, X, *, covariates=None):
        """Evidence lower bound (ELBO) of each sample, in the input's units.

        ``E_q[log p(x | z)] - KL(q(z|x) || N(0, I))`` with every normalising
        constant, including the Jacobian of the standardization. The
        expectation is a Monte Carlo average over 16 codes
        ``z = mu + sigma * eps`` with 8 fixed antithetic pairs ``+-eps``, the
        same for every sample and every call: the value is deterministic,
        depends on the order or batching of rows only through the float32
        network's rounding (about 1e-8 relative), and is an unbiased
        estimate of the ELBO. It does not depend on ``beta``, so it compares
        models fitted with different values of beta.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data in the input's units.
        covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
            Per-sample covariates, as passed to ``fit`` (the same columns,
            in the same order; see ``fit``). Required when the model was
            fitted with covariates, refused when it was not.

        Returns
        -------
        elbo : ndarray of shape (n_samples,)
            Higher is better. ``-inf`` for rows so far outside the training
            data that the bound overflows; never NaN.
        """
        X = self._validate_X(X)
        return self._fitted_model(covariates, len(X), "score_samples").elbo(X)

    def score(self, X, y=None, sample_weight=None, *, covariates=None):
        """Mean evidence lower bound per sample (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Data in the input's units, e.g. held-out samples.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Weights of the samples in the mean (None: equal). Also what lets
            a ``Pipeline`` score with metadata routing enabled, which always
            passes it on.
        covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
            Per-sample covariates, as passed to ``fit`` (the same columns,
            in the same order; see ``fit``). Required when the model was
            fitted with covariates, refused when it was not.

        Returns
        -------
        score : float
            Mean of ``score_samples(X)`` (weighted by ``sample_weight``);
            usable by ``GridSearchCV`` over ``beta`` with no ``scoring``
            argument.
        """
        elbo = self.score_samples(X, covariates=covariates)
        if sample_weight is None:
            return float(np.mean(elbo))
        return float(np.average(elbo, weights=_check_sample_weight(sample_weight, elbo)))

    def sample(self, n_samples=1, random_state=None, *, covariates=None):
        """Draw codes from the prior N(0, I) and decode them.

        Parameters
        ----------
        n_samples : int, default=1
            Number of samples to draw.
        random_state : int, RandomState instance or None, default=None
            Seeds the draws; None draws fresh ones.
        covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
            For a model fitted with covariates, those of each sample to
            draw (one row per sample: ``n_samples`` must be their number),
            as in ``fit``; refused otherwise.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features_in_)
            Decoder means (probabilities for bernoulli) in the input's units.
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer; got {n_samples!r}.")
        rng = check_random_state(random_state)
        codes = rng.standard_normal((n_samples, self._n_features_out))
        return self.inverse_transform(codes, covariates=covariates)

    def deviation_scores(self, X, *, covariates=None):
        """Per-feature z-scores of X against what the model expects of each row.

        The normative model's deviation map: for each row and feature,
        ``(x - expected - m) / s``, where ``expected`` is the row's
        reconstruction (the decoder's mean at its posterior-mean code and
        its covariates) and ``m`` and ``s`` the mean and standard deviation
        of that feature's residual ``x - expected`` over the reference rows
        that ``fit`` held out of training (``reference_fraction``). Negative
        where a value is below what is expected (as atrophy is). In the
        reference rows themselves each feature's z-scores have mean 0 and
        standard deviation 1.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New subjects, in the input's units.
        covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
            Their covariates, as passed to ``fit``. A continuous covariate
            outside its range among the training rows gives a warning that
            says how far.

        Returns
        -------
        z : ndarray of shape (n_samples, n_features)
            The z-scores, float64.

        Raises
        ------
        ValueError
            When the model has no reference: fitted with
            ``reference_fraction=0``, or a warm start that did not finish.

        See Also
        --------
        deviation_percentiles : One score per subject.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from sklearn_betavae import BetaVAETransformer
        >>> X, _ = load_digits(return_X_y=True)
        >>> vae = BetaVAETransformer(n_components=4, max_iter=5, reference_fraction=0.2,
        ...                          random_state=0).fit(X[:500])
        >>> vae.deviation_scores(X[500:510]).shape
        (10, 64)
        """
        X = self._validate_X(X)
        reference = self._measured_reference("deviation_scores")
        model = self._fitted_model(covariates, len(X), "deviation_scores")
        if model.covariates is not None:
            reference.warn_outside(model.covariates, "deviation_scores")
        residuals = np.asarray(X, dtype=np.float64) - model.decode(model.encode(X))
        return reference.z_scores(residuals)

    def deviation_percentiles(self, X, *, covariates=None):
        """One deviation score per subject: a percentile among the reference rows.

        Each row's mean squared z-score (``deviation_scores`` squared,
        averaged over the features: about 1 for a typical control) and
        where it falls among the same statistic of the reference rows, in
        percent: 50 is a typical control, 100 beyond every reference
        subject. The reference rows' own statistics, each measured against
        the other reference rows (as a new subject's is), are in
        ``reference_deviations_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New subjects, in the input's units.
        covariates : array-like or DataFrame of shape (n_samples, n_covariates) or None, default=None
            Their covariates, as passed to ``fit``.

        Returns
        -------
        percentiles : ndarray of shape (n_samples,)
            In [0, 100]; ties count half.

        Examples
        --------
        >>> from sklearn.datasets import load_digits
        >>> from sklearn_betavae import BetaVAETransformer
        >>> X, _ = load_digits(return_X_y=True)
        >>> vae = BetaVAETransformer(n_components=4, max_iter=5, reference_fraction=0.2,
        ...                          random_state=0).fit(X[:500])
        >>> vae.deviation_percentiles(X[500:503]).shape
        (3,)
        """
        z = self.deviation_scores(X, covariates=covariates)  # refuses a model without a reference
        return self._reference_.percentiles(z)

    @property
    def reference_indices_(self):
        """The training rows held out as the reference, or None (see ``reference_fraction``)."""
        check_is_fitted(self)
        return None if self._reference_ is None else self._reference_.indices

    @property
    def reference_deviations_(self):
        """The reference rows' mean squared z-scores, sorted (None without a measured reference)."""
        check_is_fitted(self)
        reference = self._reference_
        return None if reference is None or not reference.measured else reference.deviations

    def _measured_reference(self, method):
        reference = self._reference_
        if reference is None:
            raise ValueError(
                f"{method} compares each feature with its spread among reference subjects the "
                "network did not train on, and this model has none: fit it with "
                "reference_fraction > 0 (for example 0.2) to hold them out of training."
            )
        if not reference.measured:
            raise ValueError(
                f"{method}: the last fit (a warm start) did not finish, so the reference "
                "spread was not measured on the network as it is now; fit again."
            )
        return reference

    def save(self, path):
        """Save the fitted estimator to one file, without pickle.

        The file (a standard safetensors file) holds the network weights,
        Adam's state, the other fitted arrays and the training history's
        batch records (as numeric columns, so that a history of any length
        fits) as tensors, and the hyper-parameters, the per-epoch history,
        format version and library versions as JSON, with a checksum over
        all of it. Loading it never
        runs code from the file, so models can be shared safely; pickle and
        joblib keep working for trusted files.

        Not saved: ``callbacks`` (arbitrary objects; the loaded estimator has
        ``callbacks=None``), a ``RandomState`` instance as ``random_state``
        (saved as None), and the code of your own ``encoder``/``decoder``
        (only their weights: pass instances to ``load``).

        Parameters
        ----------
        path : str or path-like
            The file to write (conventionally ``*.safetensors``). It is
            written to a temporary file first and renamed, so an existing
            model is never left half-overwritten. An existing file keeps its
            permissions; a symbolic link is written through (its target is
            replaced and the link kept).

        Returns
        -------
        self : BetaVAETransformer
            The estimator, unchanged.

        See Also
        --------
        sklearn_betavae.save_pipeline : Save a whole ``Pipeline`` of a
            ``NiftiMasker`` and this estimator in one such file.

        Examples
        --------
        >>> import os, tempfile
        >>> from sklearn.datasets import load_digits
        >>> from sklearn_betavae import BetaVAETransformer
        >>> X, _ = load_digits(return_X_y=True)
        >>> vae = BetaVAETransformer(device="cpu", n_components=2, max_iter=2,
        ...                          random_state=0).fit(X[:100])
        >>> path = os.path.join(tempfile.mkdtemp(), "vae.safetensors")
        >>> _ = vae.save(path)
        >>> loaded = BetaVAETransformer.load(path)
        >>> bool((loaded.transform(X[:5]) == vae.transform(X[:5])).all())
        True
        """
        check_is_fitted(self)
        save_estimator(self, path)
        return self

    @classmethod
    @outside_inference_mode
    def load(cls, path, device=None, *, encoder=None, decoder=None):
        """Load an estimator written by ``save``.

        Parameters
        ----------
        path : str or path-like
            A file written by ``save``.
        device : str, torch.device or None, default=None
            Where to put the network, in the ``device`` parameter's forms; it
            also becomes the loaded estimator's ``device``. None means where
            it was saved from, or the CPU (with a warning) when that device
            is missing here.
        encoder, decoder : torch.nn.Module or None, default=None
            Required when the model was fitted with your own modules: fresh
            instances of the same architecture, into which the saved weights
            are loaded.

        Returns
        -------
        estimator : BetaVAETransformer
            Fitted, ready for ``transform`` or for more training with
            ``warm_start=True``.

        Raises
        ------
        ValueError
            If the file is not one written by ``save``, is truncated,
            corrupted or edited (checksum), comes from a newer format
            version, or holds weights that do not fit its parameters. A
            file edited with its checksum recomputed is checked all the
            same: every array's shape, dtype and values (``scale_`` positive
            and finite, ``mean_`` and the weights finite, the random state of
            the right size), the error naming the field. A file written by
            ``save_pipeline`` is read by ``load_pipeline``.
        """
        return load_estimator(cls, path, device=device, encoder=encoder, decoder=decoder)

    # Private helpers -----------------------------------------------------

    def _fit(self, X, device, init=None, covariates=None):
        """Train on X (with ``covariates``): a new network started by
        ``init``, or (None) the fitted one for ``max_iter`` more epochs."""
        new = init is not None
        # Numeric dtypes as they are: float32 is trained on in place, anything
        # else is converted once, chunk by chunk, through float64.
        X = check_numbers(validate_data(self, X, reset=new, dtype="numeric"))
        if self.default_dist == "bernoulli":
            check_unit_interval(X, self.default_dist)
        if new:
            seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
            if self.accelerator is not None:
                seed = shared_seed(self.accelerator, seed)
            encoding = None if covariates is None else CovariateEncoding.fit(
                covariates, self.categorical_covariates, X.shape[0])
            encoded = None if encoding is None else encoding.transform(covariates, X.shape[0], "fit")
            rows = self._reference_rows(X.shape[0], seed, encoded, encoding)
            if rows is not None and encoding is not None:
                # Scaled on the training rows alone (every level is among them).
                encoding = CovariateEncoding.fit(
                    _covariate_rows(covariates, rows[0]), self.categorical_covariates, len(rows[0]))
                encoded = encoding.transform(covariates, X.shape[0], "fit")
            X_fit, encoded_fit = self._training_rows(X, encoded, rows, device)
            architecture = self._architecture(0 if encoding is None else encoding.width)
            settings = self._training_settings(X_fit.shape, split_seed=seed)
            net = build_net(
                architecture,
                n_features=X.shape[1],
                encoder=self.encoder,
                decoder=self.decoder,
                warmup_epochs=int(round(self.beta_warmup * settings.max_epochs)),
                device=device,
                accelerator=self.accelerator,
            )
            mean, scale = standardization(X_fit, architecture.standardize)
            self._set_fitted_state(
                net=net, device=device, architecture=architecture, mean=mean, scale=scale,
                split_seed=seed, rng_state=seed_state(seed).numpy(), n_iter=0, covariates=encoding,
            )
        else:
            encoded = self._encoded_covariates(covariates, X.shape[0], "fit")
            # The first fit's splits, so that no validation or reference row
            # is ever trained on.
            rows = self._reference_rows(X.shape[0], self._split_seed_, encoded,
                                        self._covariate_encoding_)
            X_fit, encoded_fit = self._training_rows(X, encoded, rows, device)
            settings = self._training_settings(X_fit.shape, split_seed=self._split_seed_)
            without_inference_tensors(self.net_)
            # Measured again below, on the network as it ends: until then
            # (for good, if training fails) there is none to score against.
            if self._reference_ is not None:
                self._reference_ = self._reference_.unmeasured()
        configure_training(self.net_, settings)
        self._train(X_fit, encoded_fit, pca_seed=self._split_seed_ if init == "pca" else None)
        del X_fit  # on a GPU, the rows' copy there: not held while the reference is measured
        if rows is not None:
            self._reference_ = self._measure_reference(X, encoded, rows)

    def _training_rows(self, X, encoded, rows, device):
        """X and its encoded covariates without the reference rows (as they
        are when there are none), checked for the early-stopping split
        (before anything fitted changes); X on a GPU ``device`` when it
        fits there (``resident_rows``)."""
        X_fit, encoded_fit = X, encoded
        if rows is not None:
            training = rows[0]
            X_fit, encoded_fit = X[training], None if encoded is None else encoded[training]
        if self.early_stopping:
            check_validation_split(self.validation_fraction, X_fit.shape[0])
        return resident_rows(X_fit, device), encoded_fit

    def _reference_rows(self, n_rows, seed, encoded, encoding):
        """The ``(training, reference)`` rows of ``reference_fraction``, or None."""
        if not self.reference_fraction:
            return None
        return reference_split(n_rows, self.reference_fraction, seed, strata_of(encoded, encoding))

    def _measure_reference(self, X, encoded, rows):
        """The ``NormativeReference`` of the fitted network on the reference rows."""
        training, reference = rows
        X_reference = np.asarray(X[reference], dtype=np.float64)
        model = self._model_for(None if encoded is None else encoded[reference])
        residuals = X_reference - model.decode(model.encode(X_reference))
        return NormativeReference.measure(
            self.reference_fraction, reference, residuals,
            None if encoded is None else encoded[training], self._covariate_encoding_,
        )

    def _train(self, X, covariates, pca_seed=None):
        """Train ``net_`` on X (with its encoded ``covariates``), initialising
        it first if new, from the fitted random state; a new net starts at
        the pPCA solution when ``pca_seed`` (seeding the PCA solver) is given."""
        X_train = training_dataset(
            X, self.mean_, self.scale_, self._architecture_.standardize, self.device_,
            covariates=covariates,
        )
        net = self.net_

        def start():
            net.initialize()
            check_module_outputs(net.vae_module(), X.shape[1], self.n_components, self.default_dist_,
                                 self._architecture_.n_covariates)
            if pca_seed is not None:
                pca_start(net, X_train, self.beta, pca_seed, log=self._print if self.verbose else None)
                net.share_initial_state()

        run_training(net, X_train, self._rng_state_, self.device_, start=start,
                     record=self._record_run)

    def _record_run(self, *, rng_state, n_iter):
        # Where a training run ended, whether it ended well or not.
        if rng_state is not None:
            self._rng_state_ = rng_state
        self.n_iter_ = n_iter

    def _architecture(self, n_covariates):
        """The ``Architecture`` the parameters describe, for ``n_covariates``
        encoded covariate columns."""
        return Architecture(
            n_components=self.n_components,
            hidden_layer_sizes=check_hidden_layer_sizes(self.hidden_layer_sizes),
            default_dist=self.default_dist,
            standardize=check_standardize(self.standardize, self.default_dist),
            n_covariates=n_covariates,
        )

    def _check_continuable(self, device):
        """Refuse a warm start that cannot continue the fitted network."""
        architecture = self._architecture(self._architecture_.n_covariates)
        for name, fitted in vars(self._architecture_).items():
            value = getattr(architecture, name)
            if value != fitted:
                raise ValueError(
                    f"warm_start=True continues training the fitted network, so {name} "
                    f"must stay {fitted!r}; got {value!r}. Set warm_start=False to fit "
                    "a new network."
                )
        fitted_fraction = 0.0 if self._reference_ is None else self._reference_.fraction
        if self.reference_fraction != fitted_fraction:
            raise ValueError(
                "warm_start=True continues training the fitted network on the same rows, so "
                f"reference_fraction must stay {fitted_fraction!r} (another would train on "
                f"reference rows); got {self.reference_fraction!r}. Set warm_start=False to "
                "fit a new network."
            )
        accelerated = self.net_.accelerated
        if (self.accelerator is not None) != accelerated:
            raise ValueError(
                "warm_start=True continues training the fitted network the way it was "
                f"trained, {'with' if accelerated else 'without'} an accelerator; "
                "set warm_start=False to fit a new network."
            )
        if not same_device(device, self.device_):
            raise ValueError(
                f"warm_start=True continues training on the fitted device, {self.device_}; "
                f"got device={self.device!r}. To move the model, save it and load it with "
                "BetaVAETransformer.load(path, device=...)."
            )

    def _training_settings(self, shape, split_seed):
        """The ``TrainingSettings`` of a run on data of ``shape``."""
        n_samples, n_features = shape
        return TrainingSettings(
            beta=self.beta,
            lr=self.learning_rate_init,
            input_lr_scale=input_lr_factor(self.input_lr_scale, n_features, self.encoder),
            max_epochs=resolve_max_iter(self.max_iter, n_samples, n_features),
            batch_size=min(self.batch_size, n_samples),
            validation_fraction=self.validation_fraction if self.early_stopping else None,
            split_seed=split_seed,
            callbacks=self._training_callbacks(),
            verbose=self.verbose,
        )

    def _training_callbacks(self):
        # The user's instances, as skorch uses them (a new list, so that
        # early stopping is not appended to theirs).
        callbacks = list(self.callbacks or [])
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
                        sink=self._print if self.verbose else noop,
                    ),
                )
            )
        wants_bar = self.verbose >= 2 and not any(map(_is_progress_bar, callbacks))
        if wants_bar and is_main_process(self.accelerator):
            callbacks.append(("progress_bar", ProgressBar()))
        return callbacks

    @property
    def _print(self):
        return main_process_print(self.accelerator)

    def _get_fitted_state(self):
        """What fit learned besides the network, for ``save`` and
        ``save_pipeline``: the keywords of ``_set_fitted_state`` but ``net``
        and ``device`` (the network's weights, Adam's state and the history
        are the net's own), plus ``feature_names_in``."""
        return dict(
            architecture=self._architecture_,
            mean=self.mean_,
            scale=self.scale_,
            split_seed=self._split_seed_,
            rng_state=self._rng_state_,
            n_iter=self.n_iter_,
            covariates=self._covariate_encoding_,
            reference=self._reference_,
            n_features_in=self.n_features_in_,
            feature_names_in=getattr(self, "feature_names_in_", None),
        )

    def _set_fitted_state(self, *, net, device, architecture, mean, scale, split_seed, rng_state,
                          n_iter, covariates, reference=None, n_features_in=None,
                          feature_names_in=None):
        """Become fitted: the one place, for ``fit`` and for loading, that
        sets the fitted attributes (``n_features_in_`` and
        ``feature_names_in_`` when given: ``fit`` sets them in
        ``validate_data``). Returns self."""
        self.net_ = net
        self.device_ = device
        self._architecture_ = architecture
        self.default_dist_ = architecture.default_dist
        self._n_features_out = architecture.n_components
        self.mean_, self.scale_ = mean, scale
        self._split_seed_ = split_seed
        self._rng_state_ = rng_state
        self.n_iter_ = n_iter
        self._covariate_encoding_ = covariates
        self._reference_ = reference
        if n_features_in is not None:
            self.n_features_in_ = n_features_in
        if feature_names_in is not None:
            self.feature_names_in_ = np.asarray(feature_names_in, dtype=object)
        return self

    def _forget_fit(self):
        for name in [name for name in vars(self) if name.endswith("_")]:
            delattr(self, name)
        vars(self).pop("_n_features_out", None)

    def _validate_X(self, X):
        check_is_fitted(self)
        # Any numeric dtype as it is: chunks are converted one at a time, so a
        # memmap of ints is not loaded whole either.
        X = check_numbers(validate_data(self, X, reset=False, dtype="numeric",
                                        ensure_all_finite=not self._checks_rows_on_device()))
        if self.default_dist_ == "bernoulli":
            check_unit_interval(X, self.default_dist_)
        return X

    def _fitted_model(self, covariates=None, n_rows=None, method=None):
        """The fitted network for inference on ``n_rows`` rows with these
        ``covariates`` (checked and encoded for ``method``)."""
        check_is_fitted(self)
        return self._model_for(self._encoded_covariates(covariates, n_rows, method))

    def _model_for(self, encoded):
        """The fitted network for inference on rows with these encoded covariates."""
        module = self.net_.module_
        if module.training:
            # Once after fit, load or unpickling: inference uses posterior means.
            module.eval()
        return FittedModel(module, self.mean_, self.scale_, self.default_dist_, self.device_,
                           covariates=encoded,
                           check_rows=self._raise_if_not_finite if self._checks_rows_on_device() else None)

    def _checks_rows_on_device(self):
        """Whether inference checks X for NaN and infinity on the device, as it
        standardizes each chunk, rather than in a pass over X on the host.

        On a GPU, where that host pass alone is a large share of a plain
        float32 pass (``benchmarks/README.md``); not for Bernoulli rows,
        whose range the host checks anyway (``check_unit_interval``).
        """
        return self.device_.type == "cuda" and self.default_dist_ != "bernoulli"

    def _raise_if_not_finite(self, X):
        """scikit-learn's error for rows X holding NaN or infinity, as
        ``validate_data`` raises it; nothing for finite rows."""
        check_array(X, dtype=None, estimator=self, input_name="X")

    def _encoded_covariates(self, covariates, n_rows, method):
        """``covariates`` encoded as in fit, or None for a model without;
        a ValueError when they are missing, or given to a model without."""
        encoding = self._covariate_encoding_
        # Only a warm start reaches here from fit: it continues the fitted network.
        refit = ("set warm_start=False to fit a new network" if method == "fit"
                 else "refit it with fit(X, covariates=...)")
        if encoding is None:
            if covariates is not None:
                raise ValueError(
                    f"{method}: this model was fitted without covariates, so it takes none; "
                    f"{refit} to condition it on them."
                )
            return None
        if covariates is None:
            columns = "" if encoding.names is None else f" ({', '.join(encoding.names)})"
            raise ValueError(
                f"{method}: this model was fitted with {len(encoding.kinds)} covariate(s)"
                f"{columns}, so {method} needs them too: pass covariates=..., one row per "
                "sample."
            )
        return encoding.transform(covariates, n_rows, method)

    def __getstate__(self):
        return {**super().__getstate__(), _PICKLE_FORMAT_KEY: FORMAT_VERSION}

    def __setstate__(self, state):
        state = dict(state)
        version = state.pop(_PICKLE_FORMAT_KEY, None)
        # Refused here, when it is loaded, rather than by a later
        # AttributeError (an estimator pickled before a parameter existed
        # unpickled and transformed, then repr, clone, save and fit failed).
        missing = sorted(set(self._get_param_names()) - set(state))
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise ValueError(
                f"This pickle holds a BetaVAETransformer of format {version}, from a newer "
                f"sklearn_betavae than this one (format {FORMAT_VERSION}); upgrade "
                "sklearn_betavae to load it."
            )
        if version != FORMAT_VERSION or missing:
            raise ValueError(
                "This pickle holds a BetaVAETransformer from a pre-release sklearn_betavae ("
                + ("without a format version" if version is None else f"format {version!r}")
                + (f", before its parameter(s) {', '.join(missing)} existed" if missing else "")
                + f"), which cannot be loaded: format {FORMAT_VERSION} began with 0.1.0. Refit "
                "it with this version (and save it with BetaVAETransformer.save, a file format "
                "that is checked on loading)."
            )
        super().__setstate__(state)
        # skorch maps a GPU-fitted net to the CPU when CUDA is missing (with a
        # DeviceWarning); follow it, so that fit and clone work here too.
        if "net_" in state:
            placed_by = self.net_.device  # None: an accelerator placed the net
            self.device_ = (torch.device(placed_by) if placed_by is not None
                            else next(self.net_.module_.parameters()).device)
            self.device = usable_device_param(self.device)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.input_tags.positive_only = self.default_dist == "bernoulli"
        tags.transformer_tags.preserves_dtype = ["float64"]
        tags.target_tags.required = False
        return tags

