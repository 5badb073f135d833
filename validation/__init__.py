"""Physics validation: estimators, studies, plots and reports (installed as xecreco.validation)."""
