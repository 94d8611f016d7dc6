"""Analyses of the method on no model and no data set: notebook 01's mutual-information tables and figure.

May import `core`, `errors`, `io` and `config`; nothing imports it except notebooks.
"""
