"""Reading recorded runs back: comparing runs, analysing filters, drawing pictures, writing reports.

Everything here reads the results database (and, for feature maps, the dataset); nothing
here calls a backend.
"""

#: How many test-image patches per filter `filters --patches`, `plot patches`, the report and the UI show
#: unless asked otherwise (here, free of imports, so the CLI can show it in --help cheaply).
TOP_PATCHES = 9
#: The pictures `convexp plot` draws (convexp.analysis.plot.draw; summary: an experiment's groups,
#: convexp.analysis.pictures.group_curves_figure; sweep: a parameter against what it does, sweep_figure).
PICTURE_KINDS = ("filters", "evolution", "curves", "histogram", "features", "patches", "maximize", "summary", "sweep")

#: What this package offers a user's own Python (a notebook, a script), by module: the API reference
#: (docs/reference/api.md) documents exactly these, and a test holds it to them. Names only: importing
#: convexp.analysis imports none of them.
PUBLIC: dict[str, tuple[str, ...]] = {
    "convexp.analysis.notebook": ("open_results", "Results", "Run"),
    "convexp.analysis.compare": ("compare_runs", "Comparison", "LayerComparison", "RunScores"),
    "convexp.analysis.filters": (
        "analyse_layer",
        "LayerFilters",
        "FilterInfo",
        "ChannelMeasures",
        "best_operator",
        "orientation",
        "edge_shares",
    ),
    "convexp.analysis.gabor": ("fit_gabor", "GaborFit"),
    "convexp.analysis.groups": ("summarise", "Summary", "GroupRow", "Stats", "Difference", "group_runs"),
    "convexp.analysis.group_curves": ("group_curves", "GroupCurves", "GroupCurve"),
    "convexp.analysis.parameters": ("runs_frame", "runs_with_parameters", "Condition"),
    "convexp.analysis.network": ("load_network", "RecordedNetwork", "receptive_field", "ReceptiveField", "responses"),
    "convexp.analysis.plot": ("draw", "PictureOptions"),
    "convexp.analysis.report": ("write_report",),
}
