"""Network building blocks (ConvNeXt, HexNeXt, plain-op attention, heads, light summary), the
shared face encoder (:mod:`.encoder`) and model cost counting (:mod:`.flops`)."""
