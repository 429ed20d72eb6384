"""Conformance: the checks every backend must pass (:mod:`~convexp.backends.conformance.checks`), the tiny jobs and
observers they run with (:mod:`~convexp.backends.conformance.kit`), and the per-feature layer checks
(:mod:`~convexp.backends.conformance.layers`). ``convexp check NAME`` runs them; a plugin's own tests call
:func:`~convexp.backends.conformance.checks.run_check` (through :mod:`convexp.plugin_api`)."""
