"""The live loop: the controller that drives real nodes with the frame/slot driver, the
live executor, node supervision, resume and the simulated-against-measured report."""
