"""The backend side: what a backend is (:mod:`~convexp.backends.protocol`), the pluggy hooks it implements, the
features it declares, how backends are discovered (:mod:`~convexp.backends.registry`), what a trainer is given and
hands back, the checks applied to what it hands back, and the conformance checks (:mod:`~convexp.backends.conformance`).

A backend's author imports :mod:`convexp.plugin_api`, which re-exports what they need from here."""
