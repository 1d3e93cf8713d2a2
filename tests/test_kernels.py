"""The sub-kernel catalogue and named spaces (cakes_lite.kernels)."""

from __future__ import annotations

import pytest

import cakes_lite as cl
from cakes_lite.kernels import even_split, kernel_shape, kernel_volume, resolve_space

K_SHAPES = ["kxkxk", "1xkxk", "kx1xk", "kxkx1", "kx1x1", "1xkx1", "1x1xk"]


def test_catalogue_is_the_seven_k_shapes_plus_pointwise_in_canonical_order():
    assert list(cl.SUBKERNELS) == K_SHAPES + ["1x1x1"]


@pytest.mark.parametrize("name", list(cl.SUBKERNELS))
@pytest.mark.parametrize("k", [1, 3, 5])
def test_kernel_shape_follows_the_name(name, k):
    shape = kernel_shape(name, k)
    # the name spells the shape: "k" -> kernel size, "1" -> shrunk axis
    assert shape == tuple(k if c == "k" else 1 for c in name.split("x"))
    assert kernel_volume(name, k) == shape[0] * shape[1] * shape[2]


def test_volumes_for_k3_are_27_9_3_1():
    assert [kernel_volume(n, 3) for n in ("kxkxk", "1xkxk", "kx1x1", "1x1x1")] == [27, 9, 3, 1]


@pytest.mark.parametrize(
    "space, expected",
    [
        ("video-12d", ("1xkxk", "kx1x1")),
        ("video-23d", ("kxkxk", "1xkxk")),
        ("video-123d", ("kxkxk", "1xkxk", "kx1x1")),
        ("volume-2d", ("1xkxk", "kx1xk", "kxkx1")),
        ("volume-all", tuple(K_SHAPES)),
    ],
)
def test_named_spaces_match_the_design(space, expected):
    assert cl.SPACES[space] == expected
    assert resolve_space(space) == expected


def test_resolve_space_accepts_lists_and_single_names_and_sorts_canonically():
    assert resolve_space(["kx1x1", "kxkxk"]) == ("kxkxk", "kx1x1")
    assert resolve_space("1xkxk") == ("1xkxk",)


@pytest.mark.parametrize(
    "space, match",
    [
        ("video-99d", "unknown space 'video-99d'"),
        (["kxkxk", "3x3x3"], "unknown sub-kernel '3x3x3'"),
        ([], "empty"),
        (["kxkxk", "kxkxk"], "distinct"),
    ],
)
def test_resolve_space_errors_say_what_was_given(space, match):
    with pytest.raises(ValueError, match=match):
        resolve_space(space)


def test_kernel_shape_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown sub-kernel 'kxk'"):
        kernel_shape("kxk", 3)


@pytest.mark.parametrize(
    "out, space, expected",
    [
        (64, "video-123d", {"kxkxk": 22, "1xkxk": 21, "kx1x1": 21}),
        (64, "video-12d", {"1xkxk": 32, "kx1x1": 32}),
        (10, "volume-all", {"kxkxk": 2, "1xkxk": 2, "kx1xk": 2, "kxkx1": 1, "kx1x1": 1,
                            "1xkx1": 1, "1x1xk": 1}),
        (2, "video-123d", {"kxkxk": 1, "1xkxk": 1, "kx1x1": 0}),
    ],
)
def test_even_split(out, space, expected):
    assert even_split(out, space) == expected
