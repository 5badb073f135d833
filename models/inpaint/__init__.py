"""Dead-channel inpainters: the neural inpainter (:mod:`.neural`), the baselines
(:mod:`.baselines`: neighbour average, solid angle, local fit with :mod:`.localfit`) and the
sensor neighbour tables they share (:mod:`.neighbours`)."""
