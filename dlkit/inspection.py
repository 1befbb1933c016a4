"""Looking inside a trained model: Grad-CAM, class activation maps, saliency maps, every layer's
activations, and the gradient check of the course (finite differences in float64).

Each map is computed in one compiled program in inference mode (dropout off, moving statistics
of batch normalization), on the trainer's current weights. A layer is named as ``trainer.summary()``
names it (``"conv2d_1"``), or by a path into a sub-model (``"base/conv2d"``).
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from dlkit.layers.core import Dense
from dlkit.layers.pooling import GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D

_AVERAGE_POOLING = (GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalAveragePooling3D)


def _inputs(trainer, x) -> jax.Array:
    """``x`` as a float array, the trainer built on it."""
    x = np.asarray(x)
    x = x.astype(np.float32) if not np.issubdtype(x.dtype, np.floating) else x
    trainer.build(x)
    return jnp.asarray(x)


def _forward(trainer, variables, x, interceptor=None):
    """The model's one output on ``x`` in inference mode, with ``interceptor`` (if any) around every method call."""
    with nn.intercept_methods(interceptor) if interceptor is not None else contextlib.nullcontext():
        outputs, _ = trainer._forward(variables, x)
    if not isinstance(outputs, jax.Array) or outputs.ndim != 2:
        raise ValueError("The maps of dlkit.inspection explain a model with one (batch, classes) output; this one "
                         f"returns {jax.tree.map(lambda a: a.shape, outputs)}.")
    return outputs


def _at_layer(trainer, variables, x, layer: str, delta=None):
    """The outputs, and the feature map ``layer`` returns (plus ``delta``: a gradient with respect to ``delta``
    is one with respect to the map). Only the layer's first call counts."""
    path, seen, names = tuple(layer.split("/")), [], []

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and context.module.path:
            names.append("/".join(context.module.path))
            if context.module.path == path and not seen:
                out = out if delta is None else out + delta
                seen.append(out)
        return out

    outputs = _forward(trainer, variables, x, interceptor)
    if not seen:
        raise ValueError(f"No layer {layer!r} in the model; its layers are {', '.join(dict.fromkeys(names))}.")
    return outputs, seen[0]


def _class_scores(outputs, class_index):
    """``(y^c per row, c per row)``: the output of class ``class_index`` (an int, one per row, or ``None``: the
    predicted class, the row's argmax)."""
    index = jnp.argmax(outputs, -1) if class_index is None else \
        jnp.broadcast_to(jnp.asarray(class_index, jnp.int32), outputs.shape[:1])
    return jnp.take_along_axis(outputs, index[:, None], -1)[:, 0], index


def _finish(maps, x, upsample: bool, scale: Optional[str]):
    """Resize ``maps`` ``(batch, *spatial)`` bilinearly to ``x``'s spatial size (``upsample``), and scale each
    to [0, 1]: divided by its maximum (``scale="max"``), min-max scaled (``"min-max"``, for maps that may be
    negative), or not (``None``)."""
    if upsample:
        maps = jax.image.resize(maps, (maps.shape[0], *x.shape[1:maps.ndim]), "bilinear")
    if scale is None:
        return np.asarray(maps)
    axes = tuple(range(1, maps.ndim))
    bottom = maps.min(axis=axes, keepdims=True) if scale == "min-max" else 0.0
    span = maps.max(axis=axes, keepdims=True) - bottom
    return np.asarray(jnp.where(span > 0, (maps - bottom) / jnp.where(span > 0, span, 1.0), 0.0))


def grad_cam(trainer, x, layer: str, class_index: Any = None, upsample: bool = True,
             normalize: bool = True) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization"): where in the input the evidence for a class lies, seen from a convolutional layer.

    With ``A^k`` the ``k``-th channel of ``layer``'s feature map and ``y^c`` the model's output for class
    ``c``, each channel is weighted by the spatial mean of its gradient,
    ``alpha_k^c = mean_ij dy^c / dA^k_ij``, and the map is ``L^c = relu(sum_k alpha_k^c A^k)``. The paper
    uses the score before the softmax: give a model that outputs logits (``Dense(n)`` with a
    ``from_logits=True`` loss); with a softmax output ``y^c`` is the probability, whose gradient
    vanishes for confident predictions.

    Args:
        trainer: A ``Trainer`` (built on ``x`` if it is not yet).
        x: A batch of inputs, ``(batch, rows, cols, channels)`` (or one spatial axis for ``Conv1D``).
        layer: The layer whose feature map ``(batch, *spatial, channels)`` is explained, named as in
            ``trainer.summary()`` (``"conv2d_1"``), or a path into a sub-model (``"base/conv2d"``); the last
            convolutional layer gives the paper's maps.
        class_index: The class explained: an int, one int per row, or ``None`` for each row's predicted class.
        upsample: Resize the maps bilinearly from the feature map's size to ``x``'s.
        normalize: Divide each map by its maximum (maps in [0, 1]; an all-zero map stays zero).

    Returns:
        ``(batch, *spatial)`` float maps, the input's spatial size with ``upsample``.

    Raises:
        ValueError: No layer has that name, or the model does not return one ``(batch, classes)`` output.
    """
    x = _inputs(trainer, x)
    shape = jax.eval_shape(lambda v, x: _at_layer(trainer, v, x, layer)[1], trainer.state.variables, x)

    @jax.jit
    def run(variables, x):
        def score(delta):
            outputs, feature = _at_layer(trainer, variables, x, layer, delta)
            return _class_scores(outputs, class_index)[0].sum(), feature  # rows are independent: one backward

        grads, feature = jax.grad(score, has_aux=True)(jnp.zeros(shape.shape, shape.dtype))
        alpha = grads.mean(axis=tuple(range(1, grads.ndim - 1)), keepdims=True)
        return jax.nn.relu(jnp.sum(alpha * feature, axis=-1))

    return _finish(run(trainer.state.variables, x), x, upsample, "max" if normalize else None)


def class_activation_map(trainer, x, class_index: Any = None, upsample: bool = True,
                         normalize: bool = True) -> np.ndarray:
    """The class activation map (Zhou et al. 2016, "Learning Deep Features for Discriminative Localization")
    of a model that ends in ``GlobalAveragePooling`` and a ``Dense`` layer.

    With ``f_k(i, j)`` the feature map the pooling averages and ``w_k^c`` the ``Dense`` kernel's weight
    from channel ``k`` to class ``c``, ``M_c(i, j) = sum_k w_k^c f_k(i, j)``: the class score is the mean
    of ``M_c`` over the positions (plus the bias). Grad-CAM at the pooling's input gives
    ``relu(M_c) / (rows * cols)``: Grad-CAM generalises CAM to any architecture.

    Args:
        trainer: A ``Trainer`` whose model pools with ``GlobalAveragePooling1D/2D/3D`` and then applies a
            ``Dense`` layer (``Dropout`` between them is fine).
        x: A batch of inputs.
        class_index: The class mapped: an int, one int per row, or ``None`` for each row's predicted class.
        upsample: Resize the maps bilinearly from the feature map's size to ``x``'s.
        normalize: Min-max scale each map to [0, 1] (``M_c`` may be negative).

    Returns:
        ``(batch, *spatial)`` float maps ``M_c``.

    Raises:
        ValueError: The model has no global average pooling followed by a ``Dense`` layer.
    """
    x = _inputs(trainer, x)

    @jax.jit
    def run(variables, x):
        seen = {}

        def interceptor(next_fun, args, kwargs, context):
            if context.method_name == "__call__":
                if isinstance(context.module, _AVERAGE_POOLING):  # the last pooling counts
                    seen.clear()
                    seen["features"] = args[0]
                elif isinstance(context.module, Dense) and "features" in seen and "kernel" not in seen:
                    seen["kernel"] = context.module.variables["params"]["kernel"]
            return next_fun(*args, **kwargs)

        outputs = _forward(trainer, variables, x, interceptor)
        if "kernel" not in seen:
            raise ValueError("class_activation_map needs a model ending in GlobalAveragePooling and Dense (Zhou et "
                             "al. 2016); for any other, use grad_cam(trainer, x, layer=...).")
        index = _class_scores(outputs, class_index)[1]
        weights = jnp.take(seen["kernel"], index, axis=1).T  # (batch, channels): w^c of each row's class
        features = seen["features"]
        return jnp.einsum("b...k,bk->b...", features, weights.astype(features.dtype))

    return _finish(run(trainer.state.variables, x), x, upsample, "min-max" if normalize else None)


def saliency(trainer, x, class_index: Any = None) -> np.ndarray:
    """The saliency map (Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks"): how much
    each input value moves the class score, ``|dy^c / dx|``.

    Simonyan et al. show the maximum over the colour channels, ``saliency(...).max(-1)``.

    Args:
        trainer: A ``Trainer`` (built on ``x`` if it is not yet).
        x: A batch of inputs.
        class_index: The class: an int, one int per row, or ``None`` for each row's predicted class.

    Returns:
        ``|dy^c / dx|``, an array of ``x``'s shape.

    Raises:
        ValueError: The model does not return one ``(batch, classes)`` output.
    """
    x = _inputs(trainer, x)

    @jax.jit
    def run(variables, x):
        def score(x):
            return _class_scores(_forward(trainer, variables, x), class_index)[0].sum()
        return jnp.abs(jax.grad(score)(x))

    return np.asarray(run(trainer.state.variables, x))


def activations(trainer, x) -> dict:
    """Every layer's output on ``x`` (Keras' ``Model(inputs, [layer.output ...])`` trick), in inference mode.

    Args:
        trainer: A ``Trainer`` (built on ``x`` if it is not yet).
        x: A batch of inputs.

    Returns:
        ``{layer name: output}`` (numpy) for the model's layers as ``trainer.summary()`` lists them, in call
        order; a layer called twice gives its first call's output; layers returning several arrays are left out.
    """
    x = _inputs(trainer, x)

    @jax.jit
    def run(variables, x):
        outputs = {}

        def interceptor(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            path = context.module.path
            if context.method_name == "__call__" and len(path) == 1 and isinstance(out, jax.Array):
                outputs.setdefault(path[0], out)
            return out

        with nn.intercept_methods(interceptor):
            trainer._forward(variables, x)
        return outputs

    return jax.device_get(run(trainer.state.variables, x))


def _is_float_tree(value) -> bool:
    leaves = jax.tree.leaves(value)
    return bool(leaves) and all(jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) for leaf in leaves)


def check_gradients(fn_or_layer, *args, order: int = 1, modes: Sequence[str] = ("rev",), eps: float = 1e-6,
                    rtol: float = 1e-5, atol: float = 1e-5, seed: int = 0, **kwargs) -> None:
    """The gradient check of the course: the autodiff derivatives of a function or a layer against
    finite differences, in float64, with ``jax.test_util.check_grads``.

    For a random direction ``v``, forward mode checks ``J v`` against the central difference
    ``(f(x + eps v) - f(x - eps v)) / (2 eps)``; reverse mode checks the vector-Jacobian product ``u^T J``
    through ``<u^T J, v> = <u, J v>``; ``order=2`` checks the derivatives of the derivatives too. The
    check passes when they agree to ``atol + rtol * |expected|``. Floating arguments (arrays or pytrees of
    them) are differentiated; the others (integer token ids, ...) are held fixed. Everything runs under
    ``jax.enable_x64``, arguments and weights cast to float64, in one compiled program.

    Args:
        fn_or_layer: A function of ``args`` returning an array (or a pytree of them), or a layer (any Linen
            module: ``dlkit.layers.Dense(3)``), which is initialised on ``args`` with seed ``seed`` and
            checked with respect to its weights (``params``) and its floating inputs.
        *args: The point at which to check (a layer's inputs).
        order: 1 checks first derivatives; 2 also second derivatives.
        modes: ``"fwd"`` (``jax.jvp``) and/or ``"rev"`` (``jax.vjp``); a ``jax.custom_vjp`` function only
            has ``"rev"``.
        eps: The finite-difference step.
        rtol: Relative tolerance.
        atol: Absolute tolerance.
        seed: The seed of a layer's initial weights.
        **kwargs: Passed to the function, or to the layer's ``init`` and ``apply`` (``training=False``).

    Raises:
        AssertionError: A derivative differs from its finite difference by more than the tolerance.
    """
    with jax.enable_x64(True):
        to64 = lambda tree: jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)
        if isinstance(fn_or_layer, nn.Module):
            layer = fn_or_layer
            small = [jax.tree.map(lambda a: np.asarray(a, np.float32), a) if _is_float_tree(a) else a for a in args]
            variables = dict(layer.init(jax.random.key(seed), *small, **kwargs))
            rest = {name: to64(tree) for name, tree in variables.items() if name != "params" and _is_float_tree(tree)}
            fn = lambda params, *inputs: layer.apply({"params": params, **rest}, *inputs, **kwargs)
            args, kwargs = (variables.get("params", {}), *args), {}
        else:
            fn = fn_or_layer
        varied = [i for i, a in enumerate(args) if _is_float_tree(a)]
        if not varied:
            raise ValueError("check_gradients needs at least one floating argument to differentiate.")

        @jax.jit
        def f(*chosen):
            full = list(args)
            for i, value in zip(varied, chosen):
                full[i] = value
            return fn(*full, **kwargs)

        check_grads(f, tuple(to64(args[i]) for i in varied), order=order, modes=list(modes), eps=eps, atol=atol,
                    rtol=rtol)

