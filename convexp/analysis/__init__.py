"""Reading recorded runs back: comparing runs, analysing filters, drawing pictures, writing reports.

Everything here reads the results database (and, for feature maps, the dataset); nothing
here calls a backend.
"""
