"""The simulated loop: the one frame/slot driver, the system model as a slot executor,
the runner that plays policies and writes traces, the Gymnasium environments and the
policy registry."""
