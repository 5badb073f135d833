"""Physics validation: estimators, studies, plots and reports (installed as xecreco.validation).

``from xecreco.validation import validate`` gives :func:`xecreco.validation.api.validate`
(imported on first use, so importing the package stays cheap).
"""

__all__ = ["validate"]


def __getattr__(name):
    if name == "validate":
        from xecreco.validation.api import validate

        return validate
    raise AttributeError(f"module 'xecreco.validation' has no attribute {name!r}")
