"""The neural regressor: network (:mod:`.network`), presets and config resolution
(:mod:`.presets`) and the checkpoint reconstructor behind ``predict -r CKPT`` (:mod:`.reconstructor`)."""
