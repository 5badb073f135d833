"""ROOT -> ROOT pipelines: prediction (:mod:`.predict`), inpainting (:mod:`.inpaint`) and the
entry-range sharding over processes and torchrun ranks (:mod:`.sharding`)."""
