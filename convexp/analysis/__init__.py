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
