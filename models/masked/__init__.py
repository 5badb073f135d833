"""Masked-sensor networks: the MAE / inpainter network (:mod:`.network`), its fast local body
(:mod:`.local`) and their training data source and loss (:mod:`.training`)."""
