"""numpydoc validation of every public docstring, as scikit-learn's test_docstrings.py does."""

import importlib
import inspect

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

PUBLIC_MODULES = [
    "sklearn_betavae",
    "sklearn_betavae.datasets",
    "sklearn_betavae.inspection",
    "sklearn_betavae.metrics",
    "sklearn_betavae.plotting",
    "sklearn_betavae.reporting",
]

# Checks left out, with the reason:
# GL08 (no docstring) is not among them: every public name has one.
IGNORED = {
    "ES01",  # an extended summary: short helpers are clear without one
    "SA01",  # a See Also section: cross-references live in the user guide
    "RT02",  # scikit-learn's dialect names the returned value ("X_new : ndarray")
    "GL01", "GL02",  # where the summary starts, relative to the quotes
}
# Examples are required of every public class and function; their methods are
# shown in the class's example.
IGNORED_FOR_METHODS = IGNORED | {"EX01"}


def _public_objects():
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name.startswith("__"):
                continue
            obj = getattr(module, name)
            yield f"{module_name}.{name}", IGNORED
            if inspect.isclass(obj):
                for attribute, value in vars(obj).items():
                    if not attribute.startswith("_") and (
                        inspect.isfunction(value) or isinstance(value, (classmethod, staticmethod))
                    ):
                        yield f"{module_name}.{name}.{attribute}", IGNORED_FOR_METHODS


@pytest.mark.parametrize("name, ignored", list(_public_objects()), ids=lambda value: str(value)[:60])
def test_public_docstring_is_valid_numpydoc(name, ignored):
    errors = [(code, message) for code, message in numpydoc_validate.validate(name)["errors"]
              if code not in ignored]
    assert not errors, "\n".join(f"{name}: {code} {message}" for code, message in errors)


def test_the_public_names_are_all_checked():
    names = [name for name, _ in _public_objects()]
    assert "sklearn_betavae.BetaVAETransformer.fit" in names
    assert "sklearn_betavae.inspection.latent_maps" in names
    assert "sklearn_betavae.metrics.dci" in names
    assert "sklearn_betavae.BetaVAETransformer.load" in names and len(names) > 30
