"""Training tasks of the models, for :mod:`xecreco.train` (which names none of them).

Each module builds :class:`xecreco.train.tasks.TaskSpec` objects: :mod:`.regressor`
(``regressor``) and :mod:`.masked` (``mae``, ``inpainter``). They reach the training engine
through the entry-point group ``xecreco.tasks`` (declared in pyproject.toml, the same way a
plugin package adds a task), which :func:`xecreco.train.tasks.get_task` reads.
"""
