"""Training T2DRL (Algorithm 1) in the frame/slot driver, with its run folder."""
