"""convexp's built-in backends, each an ordinary plugin of the ``convexp.backends`` entry-point group."""
