"""What a network is, independent of any framework: the layer vocabulary (:mod:`~convexp.model.layers`), activations,
initializers (the formulas, the one source of truth), convolution arithmetic, optimizers, augmentation, the seeded
draws every backend shares, and what may name a layer or a run. Every backend builds from these definitions."""
