"""Plotly figures for the notebooks and the app (kernel layouts, importance, Pareto, slices,
clips). Import from the sub-modules, e.g. ``from cakes_lite.viz.layout import layout_bars``.
Every figure has an explicit height (Gradio and JupyterLab need it)."""
