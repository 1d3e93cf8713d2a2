"""Progress bars that stay readable in headless and rendered notebooks.

``tqdm.auto`` draws an ipywidgets bar inside Jupyter. A notebook executed headless
(``jupyter nbconvert --execute``, papermill, the test suite) stores only the widget's first
state, so GitHub and nbviewer show every such bar stuck at "0 %". With ``CAKES_WIDGETS=0`` in
the environment (the switch the notebooks already use for their widgets) :func:`progress_bar`
returns tqdm's plain-text bar instead, whose last line ("100% … 12/12") is what a rendered copy
shows.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm as auto_tqdm
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
        ``tqdm.auto.tqdm(*args, **kwargs)`` (a widget in Jupyter, text in a terminal), or, when
        ``CAKES_WIDGETS`` is "0", ``tqdm.std.tqdm(*args, **kwargs)`` that first shows up after
        :data:`TEXT_MININTERVAL_S` seconds and refreshes at most that often (unless ``delay`` /
        ``mininterval`` are given).
    """
    if widgets_enabled():
        return auto_tqdm(*args, **kwargs)
    kwargs.setdefault("delay", TEXT_MININTERVAL_S)
    kwargs.setdefault("mininterval", TEXT_MININTERVAL_S)
    return text_tqdm(*args, **kwargs)
