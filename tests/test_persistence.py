"""save / load: exact round trips, no unpickling, and clear errors for bad files."""

import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sklearn.exceptions import NotFittedError
from torch import nn

from sklearn_betavae import BetaVAETransformer, _data, _persistence
from sklearn_betavae._persistence import read_model_file, write_model_file
from tests.conftest import FAST_PARAMS, LinearEncoder, requires_cuda


@pytest.fixture
def saved(fitted, tmp_path):
    path = tmp_path / "vae.safetensors"
    fitted.save(path)
    return path


def _same_model(a, b, X):
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    Z = a.transform(X[:7])
    np.testing.assert_array_equal(a.inverse_transform(Z), b.inverse_transform(Z))
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    np.testing.assert_array_equal(a.sample(5, random_state=0), b.sample(5, random_state=0))


def test_round_trip_is_exact(fitted, saved, digits):
    loaded = BetaVAETransformer.load(saved)
    _same_model(fitted, loaded, digits)
    assert loaded.get_params() == fitted.get_params()
    assert loaded.n_iter_ == fitted.n_iter_ and loaded.n_features_in_ == 64
    assert loaded.net_.history.to_list() == fitted.net_.history.to_list()
    assert loaded.device_ == torch.device("cpu")


def test_loading_never_unpickles(saved, digits, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load must not unpickle")

    for module, name in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")]:
        monkeypatch.setattr(module, name, refuse)
    assert BetaVAETransformer.load(saved).transform(digits).shape == (240, 3)


def test_save_load_then_warm_start_equals_one_fit(digits, tmp_path):
    params = dict(FAST_PARAMS, beta_warmup=0.0)
    whole = BetaVAETransformer(**dict(params, max_iter=5)).fit(digits)
    BetaVAETransformer(**dict(params, max_iter=2)).fit(digits).save(tmp_path / "m.safetensors")
    resumed = BetaVAETransformer.load(tmp_path / "m.safetensors")
    resumed.set_params(warm_start=True, max_iter=3).fit(digits)
    np.testing.assert_array_equal(resumed.transform(digits), whole.transform(digits))


def test_feature_names_and_pandas_output_survive(digits, tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(digits, columns=[f"px{i}" for i in range(64)])
    BetaVAETransformer(**FAST_PARAMS).fit(frame).save(tmp_path / "m.safetensors")
    vae = BetaVAETransformer(**FAST_PARAMS).fit(frame)
    loaded = BetaVAETransformer.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(loaded.feature_names_in_, vae.feature_names_in_)
    out = loaded.set_output(transform="pandas").transform(frame)
    assert list(out.columns) == ["betavaetransformer0", "betavaetransformer1", "betavaetransformer2"]


def test_unsaved_settings_are_documented_defaults(digits, tmp_path):
    BetaVAETransformer(
        **dict(FAST_PARAMS, random_state=np.random.RandomState(0)), callbacks=[]
    ).fit(digits).save(tmp_path / "m.safetensors")
    loaded = BetaVAETransformer.load(tmp_path / "m.safetensors")
    assert loaded.callbacks is None and loaded.random_state is None


def test_device_argument_moves_the_model_and_sets_the_parameter(saved, fitted, digits):
    loaded = BetaVAETransformer.load(saved, device=torch.device("cpu"))
    assert loaded.device == torch.device("cpu") and loaded.device_ == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be"):
        BetaVAETransformer.load(saved, device="tpu")


def test_a_model_saved_on_cuda_loads_on_the_cpu(saved, digits, tmp_path, monkeypatch):
    document, tensors = read_model_file(saved)
    document["fitted"]["device_"] = "cuda:0"
    document["params"]["device"] = "cuda"
    write_model_file(tmp_path / "cuda.safetensors", document, tensors)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match='fitted on cuda:0.*loaded on the CPU, with device="cpu"'):
        loaded = BetaVAETransformer.load(tmp_path / "cuda.safetensors")
    assert loaded.device_ == torch.device("cpu") and loaded.device == "cpu"
    assert loaded.transform(digits).shape == (240, 3)
    loaded.set_params(warm_start=True, max_iter=1).fit(digits)  # trains on, here
    assert loaded.n_iter_ == 4


@requires_cuda
def test_cpu_and_cuda_models_load_on_each_other(fitted, saved, digits, tmp_path, monkeypatch):
    monkeypatch.setattr(_data, "CHUNK_VALUES", 64 * 7)  # 7 rows a chunk: several chunks each way
    on_gpu = BetaVAETransformer.load(saved, device="cuda")
    codes = fitted.transform(digits)
    # The same float32 weights give codes that differ by rounding only: the
    # GPU's kernels sum in another order than the CPU's (seen: 3.8e-6 on an
    # H100; on the CPU this model's float32 rounding is 1.6e-7 of its
    # largest code, against a float64 pass).
    np.testing.assert_allclose(on_gpu.transform(digits), codes, rtol=0, atol=1e-5 * np.abs(codes).max())
    # Decoded on the device and copied straight into the float64 result.
    images = fitted.inverse_transform(codes)
    np.testing.assert_allclose(on_gpu.inverse_transform(codes), images,
                               rtol=0, atol=1e-5 * np.abs(images).max())
    on_gpu.save(tmp_path / "gpu.safetensors")
    back = BetaVAETransformer.load(tmp_path / "gpu.safetensors", device="cpu")
    np.testing.assert_array_equal(back.transform(digits), fitted.transform(digits))


def test_custom_modules_need_fresh_instances_to_load(random_data, tmp_path):
    params = dict(FAST_PARAMS, n_components=2)
    vae = BetaVAETransformer(**params, encoder=LinearEncoder(9, 2)).fit(random_data)
    path = tmp_path / "custom.safetensors"
    vae.save(path)
    with pytest.raises(ValueError, match="custom encoder.*LinearEncoder.*load\\(path, encoder=...\\)"):
        BetaVAETransformer.load(path)
    with pytest.raises(ValueError, match="built-in decoder"):
        BetaVAETransformer.load(path, encoder=LinearEncoder(9, 2), decoder=nn.Linear(2, 9))
    loaded = BetaVAETransformer.load(path, encoder=LinearEncoder(9, 2))
    np.testing.assert_array_equal(loaded.transform(random_data), vae.transform(random_data))


def test_parameter_types_and_output_settings_survive(digits, tmp_path):
    vae = BetaVAETransformer(
        **dict(FAST_PARAMS, device=torch.device("cpu"), hidden_layer_sizes=[16, 8])
    ).fit(digits)
    vae.set_output(transform="pandas")
    pytest.importorskip("pandas")
    vae.save(tmp_path / "m.safetensors")
    loaded = BetaVAETransformer.load(tmp_path / "m.safetensors")
    assert loaded.get_params() == vae.get_params()
    assert type(loaded.hidden_layer_sizes) is list and isinstance(loaded.device, torch.device)
    assert type(loaded.transform(digits)).__name__ == "DataFrame"


def test_saved_files_get_the_usual_permissions(saved):
    import os

    mask = os.umask(0)
    os.umask(mask)
    assert saved.stat().st_mode & 0o777 == 0o666 & ~mask


def test_saving_over_a_file_keeps_its_mode(fitted, saved):
    import os

    os.chmod(saved, 0o600)
    fitted.save(saved)
    assert saved.stat().st_mode & 0o777 == 0o600
    os.chmod(saved, 0o640)
    fitted.save(saved)
    assert saved.stat().st_mode & 0o777 == 0o640


def test_saving_through_a_symlink_writes_its_target(fitted, saved, tmp_path, digits):
    import os

    link = tmp_path / "link.safetensors"
    link.symlink_to(saved)
    os.chmod(saved, 0o600)
    saved.write_bytes(b"old")
    fitted.save(link)
    assert link.is_symlink() and link.resolve() == saved.resolve()
    assert saved.stat().st_mode & 0o777 == 0o600
    np.testing.assert_array_equal(BetaVAETransformer.load(saved).transform(digits),
                                  fitted.transform(digits))
    # A dangling link: the file is created where it points.
    dangling = tmp_path / "dangling.safetensors"
    dangling.symlink_to(tmp_path / "target.safetensors")
    fitted.save(dangling)
    assert dangling.is_symlink() and (tmp_path / "target.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_malformed_documents_are_value_errors(saved, tmp_path):
    """A re-signed file passes the checksum; its structure is still checked."""
    def variant(edit, name):
        document, tensors = read_model_file(saved)
        edit(document, tensors)
        write_model_file(tmp_path / name, document, tensors)
        return tmp_path / name

    cases = {
        "no_mean": (lambda d, t: t.pop("mean"), "structure of a saved BetaVAETransformer"),
        "extra_param": (lambda d, t: d["params"].update(evil=1), "structure of a saved"),
        "bad_param": (lambda d, t: d["params"].update(beta=-1.0), "beta"),
        "short_history": (lambda d, t: d["history"].pop(), "history whose batch records do not match"),
        "n_iter": (lambda d, t: d["fitted"].update(n_iter_=2), "history whose length is not n_iter_"),
        "nan_weights": (lambda d, t: t[next(k for k in t if k.startswith("module."))].fill_(np.nan),
                        "weights that are not finite"),
        "names": (lambda d, t: d["fitted"].update(feature_names_in_=["a"]), "feature names"),
        "name_types": (lambda d, t: d["fitted"].update(feature_names_in_=list(range(64))),
                       "feature_names_in_ that are not a list of strings"),
        "n_features": (lambda d, t: d["fitted"].update(n_features_in_=0), "n_features_in_ = 0"),
        "n_iter_type": (lambda d, t: d["fitted"].update(n_iter_=3.0), "n_iter_ = 3.0"),
        "seed": (lambda d, t: d["fitted"].update(split_seed_=-1), "split_seed_ = -1"),
    }
    for name, (edit, message) in cases.items():
        with pytest.raises(ValueError, match=message):
            BetaVAETransformer.load(variant(edit, name + ".safetensors"))


def _architecture(**changes):
    return lambda d, t: d["fitted"]["architecture_"].update(changes)


@pytest.mark.parametrize("edit, message", [
    # Each loaded before: "laplace" on a normal network even made score use
    # the Laplace likelihood.
    (lambda d, t: d["fitted"].update(default_dist_="poisson"), r"default_dist_ = 'poisson'.*'normal'"),
    (lambda d, t: d["fitted"].update(default_dist_="laplace"), r"default_dist_ = 'laplace'.*'normal'"),
    (_architecture(default_dist="poisson"), r"architecture_\['default_dist'\] = 'poisson'"),
    (_architecture(standardize="bogus"), r"architecture_\['standardize'\] = 'bogus'"),
    (_architecture(standardize="auto"), r"architecture_\['standardize'\] = 'auto'"),
    (_architecture(standardize=1), r"architecture_\['standardize'\] = 1;"),
    (_architecture(linear_path=True), r"architecture_ = .*a mapping of"),
    (lambda d, t: d["params"].pop("input_lr_scale"), r"parameters.*input_lr_scale"),
    (_architecture(n_components=True), r"architecture_\['n_components'\] = True"),
    (_architecture(hidden_layer_sizes=[16, 0]), r"architecture_\['hidden_layer_sizes'\] = \[16, 0\]"),
    (_architecture(extra=1), r"architecture_ = .*a mapping of"),
    (lambda d, t: d["fitted"].update(device_="tpu:0"), r"device_ = 'tpu:0'"),
    (lambda d, t: d["fitted"].update(split_seed_=2**40), r"split_seed_ = 1099511627776.*from 0 to"),
    (lambda d, t: d["output_config"].update(transform="excel"), r"output_config = \{'transform': 'excel'\}"),
    (lambda d, t: d["params"].update(beta=True), r"holds an invalid saved model.*'beta'"),
])
def test_crafted_fields_are_refused_naming_the_file(saved, tmp_path, edit, message):
    """A re-signed file holding a value no fit produces: a ValueError naming the file."""
    document, tensors = read_model_file(saved)
    edit(document, tensors)
    path = tmp_path / "crafted.safetensors"
    write_model_file(path, document, tensors)
    with pytest.raises(ValueError, match=message) as raised:
        BetaVAETransformer.load(path)
    assert str(path) in str(raised.value)


def _signed(path, version, text, tensors=None):
    """A file with this format field and document, and a valid checksum."""
    tensors = tensors or {"w": torch.zeros(1)}
    metadata = {"sklearn_betavae.format_version": version, "sklearn_betavae.document": text,
                "sklearn_betavae.sha256": _persistence._digest(version, text, tensors)}
    save_file(tensors, path, metadata=metadata)
    return path


def test_malformed_metadata_is_a_value_error_naming_the_file(tmp_path):
    # A nested document raised RecursionError, and "²" (a digit to isdigit)
    # int()'s bare error, without the file's name.
    from sklearn_betavae import load_pipeline

    files = [
        (_signed(tmp_path / "deep.safetensors", "1", "[" * 100_000 + "]" * 100_000), "too deeply nested"),
        (_signed(tmp_path / "text.safetensors", "1", "{not json"), "not valid JSON"),
        (_signed(tmp_path / "power.safetensors", "²", "{}"), "format version '²'"),
        (_signed(tmp_path / "list.safetensors", "1", "[1, 2]"), "structure of a saved"),
    ]
    for path, message in files:
        with pytest.raises(ValueError, match=message) as raised:
            BetaVAETransformer.load(path)
        assert str(path) in str(raised.value)
        with pytest.raises(ValueError) as raised:
            load_pipeline(path)
        assert str(path) in str(raised.value)
    # Nested just within what json parses: the tags are unwound without error.
    depth = 900
    text = '{"params": {"hidden_layer_sizes": ' + '{"tuple": [' * depth + "1" + "]}" * depth + "}}"
    with pytest.raises(ValueError, match="not valid JSON|structure of a saved") as raised:
        BetaVAETransformer.load(_signed(tmp_path / "tags.safetensors", "1", text))
    assert "tags.safetensors" in str(raised.value)


def _first(prefix, tensors):
    return next(name for name in sorted(tensors) if name.startswith(prefix))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["scale"].zero_(), r"scale_.*positive and finite"),
    (lambda t: t["scale"].neg_(), r"scale_.*positive and finite"),
    (lambda t: t["scale"].fill_(np.inf), r"scale_.*positive and finite"),
    (lambda t: t["mean"].fill_(np.nan), r"mean_.*finite"),
    (lambda t: t.update(mean=t["mean"].float()), r"mean_.*float32.*float64"),
    (lambda t: t.update(scale=t["scale"][:-1]), r"scale_.*shape \(63,\).*\(64,\)"),
    (lambda t: t.update(rng_state=t["rng_state"][:3]), r"rng_state.*shape \(3,\).*\(5056,\)"),
    (lambda t: t.update(rng_state=t["rng_state"].long()), r"rng_state.*int64.*uint8"),
    (lambda t: t.update({_first("module.", t): t[_first("module.", t)].double()}),
     r"module\..*float64.*float32"),
    (lambda t: t.update({_first("optimizer.", t): t[_first("optimizer.", t)][:1]}),
     r"optimizer\..*shape"),
    (lambda t: t[_first("optimizer.0.exp_avg", t)].fill_(np.nan), r"optimizer\..*NaN"),
    (lambda t: t.update({_first("optimizer.0.step", t): torch.tensor([1.0, 2.0])}),
     r"optimizer\.0\.step.*shape"),
])
def test_edited_arrays_are_refused_naming_the_field(saved, tmp_path, edit, message):
    """Re-signed files with arrays a fit cannot produce: each field is checked."""
    document, tensors = read_model_file(saved)
    edit(tensors)
    write_model_file(tmp_path / "edited.safetensors", document, tensors)
    with pytest.raises(ValueError, match=message):
        BetaVAETransformer.load(tmp_path / "edited.safetensors")


def test_a_very_long_history_saves_and_loads(digits, tmp_path):
    """800,000 batch records (a long fit on many batches) would not fit in
    safetensors' 100 MB header; they go in tensors, the epochs in JSON."""
    from skorch.history import History

    vae = BetaVAETransformer(**dict(FAST_PARAMS, max_iter=1)).fit(digits)
    template = vae.net_.history.to_list()[0]
    train = [dict(record, train_loss=1.0 / (i + 3)) for i, record in enumerate(template["batches"])]
    batches = (train * (800 // len(train) + 1))[:800]
    batches[-1] = dict(batches[-1], note="a string", flag=True)  # kept in JSON
    epochs = [dict(template, epoch=k + 1, batches=batches) for k in range(1000)]
    vae.net_.history, vae.n_iter_ = History(epochs), len(epochs)
    path = tmp_path / "long.safetensors"
    vae.save(path)
    assert path.stat().st_size < 200e6
    loaded = BetaVAETransformer.load(path)
    assert loaded.net_.history.to_list() == vae.net_.history.to_list()
    np.testing.assert_array_equal(loaded.transform(digits), vae.transform(digits))


@pytest.mark.parametrize("old_format", ["1", "2"])
def test_files_of_the_pre_releases_are_refused_with_a_request_to_refit(saved, tmp_path, old_format):
    # Before version 1 the format number was kept under another key, and
    # format "1" held the history in the JSON: such files once loaded through
    # compatibility code, and now are refused whole.
    with safe_open(str(saved), framework="pt") as file:
        metadata = dict(file.metadata())
        tensors = {name: file.get_tensor(name) for name in file.keys()}
    metadata["sklearn_betavae.format"] = old_format
    del metadata["sklearn_betavae.format_version"]
    save_file(tensors, tmp_path / "old.safetensors", metadata=metadata)
    with pytest.raises(ValueError, match=rf"pre-release sklearn_betavae.*format '{old_format}'.*Refit"):
        BetaVAETransformer.load(tmp_path / "old.safetensors")


def test_a_history_without_its_batch_records_is_refused(fitted, saved, tmp_path):
    document, tensors = read_model_file(saved)
    document["history"] = fitted.net_.history.to_list()
    tensors = {name: value for name, value in tensors.items() if not name.startswith("history.")}
    write_model_file(tmp_path / "no_records.safetensors", document, tensors)
    with pytest.raises(ValueError, match="batch records are missing"):
        BetaVAETransformer.load(tmp_path / "no_records.safetensors")


def test_edited_batch_records_are_refused(saved, tmp_path):
    document, tensors = read_model_file(saved)
    name = next(name for name in tensors if name.startswith("history.batch."))
    tensors[name] = tensors[name][:-1]
    write_model_file(tmp_path / "edited.safetensors", document, tensors)
    with pytest.raises(ValueError, match="history"):
        BetaVAETransformer.load(tmp_path / "edited.safetensors")


def test_unfitted_estimators_cannot_be_saved(tmp_path):
    with pytest.raises(NotFittedError):
        BetaVAETransformer().save(tmp_path / "m.safetensors")


def test_newer_format_versions_are_refused(fitted, tmp_path, monkeypatch):
    current = _persistence.FORMAT_VERSION
    monkeypatch.setattr(_persistence, "FORMAT_VERSION", current + 1)
    fitted.save(tmp_path / "future.safetensors")
    monkeypatch.setattr(_persistence, "FORMAT_VERSION", current)
    with pytest.raises(ValueError, match=f"format version '{current + 1}', newer than the version {current}"):
        BetaVAETransformer.load(tmp_path / "future.safetensors")


def test_truncated_files_are_refused(saved):
    data = saved.read_bytes()
    for length in (0, 5, len(data) // 2, len(data) - 1):
        saved.write_bytes(data[:length])
        with pytest.raises(ValueError, match="not a readable model file"):
            BetaVAETransformer.load(saved)


def test_edited_files_fail_the_checksum(saved):
    data = saved.read_bytes()
    # The last byte is tensor data; the beta value sits in the JSON header.
    tampered = [data[:-1] + bytes([data[-1] ^ 1]), data.replace(b'\\"beta\\": 4.0', b'\\"beta\\": 9.0')]
    assert tampered[1] != data
    for contents in tampered:
        saved.write_bytes(contents)
        with pytest.raises(ValueError, match="do not match their checksum"):
            BetaVAETransformer.load(saved)


def test_weights_that_do_not_fit_the_parameters_are_refused(saved, tmp_path):
    document, tensors = read_model_file(saved)
    document["fitted"]["architecture_"]["n_components"] = 4
    write_model_file(tmp_path / "mismatch.safetensors", document, tensors)
    with pytest.raises(ValueError, match="do not fit the network its parameters describe"):
        BetaVAETransformer.load(tmp_path / "mismatch.safetensors")


def test_other_files_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model file"):
        BetaVAETransformer.load(tmp_path / "missing.safetensors")
    (tmp_path / "noise.bin").write_bytes(np.random.RandomState(0).bytes(1000))
    with pytest.raises(ValueError, match="not a readable model file"):
        BetaVAETransformer.load(tmp_path / "noise.bin")
    save_file({"w": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not one written by BetaVAETransformer.save"):
        BetaVAETransformer.load(tmp_path / "other.safetensors")


def test_a_failed_save_leaves_the_old_file_whole(fitted, saved, monkeypatch):
    before = saved.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_persistence, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(saved)
    assert saved.read_bytes() == before
    assert sorted(path.name for path in saved.parent.iterdir()) == [saved.name]
