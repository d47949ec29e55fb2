"""VL-JEPA perception: the model, the data, and the nodes that run it over the bus."""
