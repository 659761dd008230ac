"""SIG: the horizontal sinusoidal signal of Barni, Kallas and Tondi 2019.

Barni, Kallas and Tondi, *A New Backdoor Attack in CNNs by Training Set Corruption Without Label
Poisoning*, ICIP 2019 (arXiv:1902.11237): the attacker adds one faint signal
``v(i, j) = delta * sin(2 * pi * j * f / m)`` to training images of the target class only, keeping
their labels (a clean-label backdoor), where ``j`` is the column, ``m`` the number of columns and
``f`` the number of periods across the image.  The paper uses ``delta = 20`` on the 8-bit scale and
``f = 6``; at test time the same signal (often stronger) is added to any image.
"""

from __future__ import annotations

import numpy as np

from poisonlab.params import BOOLEAN, POSITIVE, UNIT, validated
from poisonlab.triggers._checks import check_image, check_range, nhwc_view


def sinusoid_signal(width: int, delta: float = 20 / 255, frequency: float = 6.0) -> np.ndarray:
    """The SIG signal of one image row on the unit scale.

    Parameters
    ----------
    width : int
        Number of columns ``m`` (>= 1).
    delta : float, default 20/255
        Amplitude on the unit scale (1 = 255 for ``uint8``).
    frequency : float, default 6
        Periods ``f`` across the width.

    Returns
    -------
    numpy.ndarray
        float64 ``(width,)`` in ``[-delta, delta]``: ``delta * sin(2 pi j f / m)`` for ``j = 0 .. m-1``.
    """
    return delta * np.sin(2.0 * np.pi * np.arange(width) * frequency / width)


@validated({"delta": [UNIT], "frequency": [POSITIVE], "channels_first": [BOOLEAN]})
def sinusoid(
    x: np.ndarray, delta: float = 20 / 255, frequency: float = 6.0, channels_first: bool = False
) -> np.ndarray:
    """Add the horizontal sinusoid of SIG (Barni et al. 2019) to every image, with clipping.

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, H, W, C)``, ``(N, H, W)``, ``(H, W, C)`` or ``(H, W)``; ``(N, C, H, W)`` /
        ``(C, H, W)`` with ``channels_first=True``.  ``uint8`` in ``[0, 255]`` or float in
        ``[0, 1]``.
    delta : float, default 20/255
        Amplitude on the unit scale, in ``[0, 1]`` (the paper's 20 grey levels by default).
    frequency : float, default 6
        Periods across the image width (> 0).
    channels_first : bool, default False
        Whether the channel axis of ``x`` precedes the spatial axes.

    Returns
    -------
    numpy.ndarray
        A new array with the shape and dtype of ``x``: ``clip(x + v)``, the same signal on every row
        and channel; ``uint8`` results are rounded to the nearest level.

    Raises
    ------
    ValueError
        For a bad dtype, range or shape of ``x`` or a bad parameter.
    """
    view = nhwc_view(check_image(x), channels_first)
    check_range(x)
    work = np.dtype(np.float32) if x.dtype in (np.uint8, np.float16) else x.dtype
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    signal = (sinusoid_signal(view.shape[2], float(delta), float(frequency)) * scale).astype(work)
    mixed = view.astype(work) + signal[None, None, :, None]
    if x.dtype == np.uint8:
        np.rint(mixed, out=mixed)
    np.clip(mixed, 0, scale, out=mixed)
    out = np.empty(x.shape, dtype=x.dtype)
    nhwc_view(out, channels_first)[...] = mixed
    return out
