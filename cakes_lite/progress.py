"""Progress bars that stay readable in live, saved, headless and rendered notebooks.

``tqdm.auto`` draws an ipywidgets bar inside Jupyter. Two things go wrong with a plain one:

* a saved notebook keeps a reference to the bar's widget model, which is gone once the bar is
  closed (tqdm closes ``leave=False`` bars) or the kernel restarts, so JupyterLab shows "Error
  displaying widget: model not found" in its place when the notebook is reopened (and JupyterLab
  autosaves). :func:`progress_bar` therefore shows the widget under a display id and, when the
  bar closes, replaces that output with its final text line ("search: 100% … 12/12"), or with
  nothing for ``leave=False``, and closes the widgets: nothing in the saved file points to a
  widget model.
* a notebook executed headless (``jupyter nbconvert --execute``, papermill, the test suite)
  stores only the widget's first state, so GitHub and nbviewer show every such bar stuck at
  "0 %". With ``CAKES_WIDGETS=0`` in the environment (the switch the notebooks use for their
  widgets) :func:`progress_bar` returns tqdm's plain-text bar instead, whose last line is what a
  rendered copy shows.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm as auto_tqdm
from tqdm.notebook import tqdm as notebook_tqdm
from tqdm.std import tqdm as text_tqdm

#: values of CAKES_WIDGETS that switch widgets off ("" too: the notebooks read it that way)
_OFF = ("", "0", "false", "no", "off")
#: plain-text bars appear only after this long (s) and then refresh at most this often, unless
#: told otherwise: no "0 %" line, and a loop shorter than this prints nothing at all
TEXT_MININTERVAL_S = 10.0


def widgets_enabled() -> bool:
    """False when the environment variable ``CAKES_WIDGETS`` says "0" (or is set but empty)."""
    value = os.environ.get("CAKES_WIDGETS")
    return value is None or value.strip().lower() not in _OFF


def progress_bar(*args, **kwargs):
    """A tqdm bar: ``tqdm.auto`` normally, plain text when ``CAKES_WIDGETS=0``.

    Takes exactly tqdm's arguments (an iterable and/or ``total=``, ``desc=``, ``disable=`` …)
    and returns the bar, so it replaces ``tqdm.auto.tqdm`` at any call site::

        for batch in progress_bar(loader, desc="epoch 1"):
            ...
        bar = progress_bar(total=10, desc="timing rounds"); bar.update(1); bar.close()

    Returns:
        ``tqdm.auto.tqdm(*args, **kwargs)`` (in Jupyter a :class:`ReplacedWidgetBar`, a widget
        that leaves text behind; text in a terminal), or, when
        ``CAKES_WIDGETS`` is "0", ``tqdm.std.tqdm(*args, **kwargs)`` that first shows up after
        :data:`TEXT_MININTERVAL_S` seconds and refreshes at most that often (unless ``delay`` /
        ``mininterval`` are given).
    """
    if widgets_enabled():
        if issubclass(auto_tqdm, notebook_tqdm):  # tqdm.auto picked the widget: we are in Jupyter
            return ReplacedWidgetBar(*args, **kwargs)
        return auto_tqdm(*args, **kwargs)
    kwargs.setdefault("delay", TEXT_MININTERVAL_S)
    kwargs.setdefault("mininterval", TEXT_MININTERVAL_S)
    return text_tqdm(*args, **kwargs)


class ReplacedWidgetBar(notebook_tqdm):
    """tqdm's notebook widget bar whose output turns into plain text when it closes.

    The widget is displayed under a display id; :meth:`close` updates that output to the bar's
    final line (or to nothing when ``leave=False`` and the loop finished) and closes the widget
    models, so a saved notebook holds text where the bar was, never a widget reference that
    cannot be found after reopening. A bar stopped by an error keeps its line ("40% 4/10 …").
    """

    def __init__(self, *args, **kwargs):
        self._handle = None
        kwargs.pop("display", None)
        super().__init__(*args, display=False, **kwargs)  # shown by _show(), with a display id
        if not self.disable and self.delay <= 0:
            self._show()

    def _show(self) -> None:
        # IPython is present whenever tqdm.auto chose the notebook bar (the only way here)
        from IPython.display import display

        self._handle = display(self.container, display_id=True)
        self.displayed = True

    def display(self, msg=None, pos=None, close=False, bar_style=None, check_delay=True):
        """tqdm's widget update, minus its own ``display(container)`` and its close signal."""
        if not hasattr(self, "container"):
            return
        super().display(msg, pos, close=False, bar_style=bar_style, check_delay=False)
        if check_delay and self.delay > 0 and not self.displayed:
            self._show()

    def close(self) -> None:
        if self.disable:
            return
        finished = not (self.total and self.n < self.total)
        super().close()
        if self._handle is not None:
            text = "" if finished and not self.leave else self.format_meter(**self.format_dict)
            self._handle.update({"text/plain": text}, raw=True)
            self._handle = None
        for widget in (*self.container.children, self.container):
            widget.close()
