"""The trained user tower's serving forward pass on ONNX Runtime, for CPUs.

A serving batch asks the tower for the states of a few users: two small pre-norm
transformer layers over ``max_len`` positions. On a CPU, PyTorch spends most of that
call on its per-operator cost (some forty operators, each a few microseconds of
dispatch, checks and allocation), not on arithmetic. ONNX Runtime runs the same graph,
planned once, with fused matrix products, layer norms and GELU: about half the time at
the batch sizes a served pass makes.
It also gives a user the same state alone or in any batch, bit for bit, which PyTorch's
CPU kernels do not.

:func:`tower_graph` writes :meth:`recommender.tower.UserTower.last_state` as an ONNX
graph over the tower's own weights, operator for operator (the same masks, the last
layer run for the last position only); :class:`TowerRuntime` runs it. The graph is made
from the loaded weights in a few milliseconds, so nothing new is stored in a model and
every model already saved gets it. Training, and inference on a GPU, stay with PyTorch.
Tests hold the two equal to float rounding for varied shapes, paddings and depths.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from recommender.tower import UserTower

__all__ = ["OPSET", "TowerRuntime", "tower_graph"]

#: ONNX opset of the graph (20: the first with a ``Gelu`` operator).
OPSET = 20


class _Graph:
    """Nodes and constants of a graph under construction, named in order."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, value: np.ndarray | torch.Tensor, name: str) -> str:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        value = np.array(value, order="C")  # a copy; keeps 0-d scalars 0-d
        self.constants.append(numpy_helper.from_array(value, name))
        return name

    def op(self, kind: str, *inputs: str, **attrs: object) -> str:
        self._n += 1
        out = f"{kind.lower()}_{self._n}"
        self.nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out


def tower_graph(net: UserTower) -> onnx.ModelProto:
    """``net.last_state`` as an ONNX model: ``(seq int64 (b, max_len), table float32
    (n, dim)) -> state float32 (b, dim)``; ``seq`` left-padded with -1 (as
    :func:`~recommender.sequences.left_pad` makes it)."""
    g = _Graph()
    length, d = net.max_len, net.dim
    f32 = np.float32
    zero = g.const(np.array(0, np.int64), "zero")
    valid = g.op("GreaterOrEqual", "seq", zero)  # (b, L)
    valid_f = g.op(
        "Unsqueeze", g.op("Cast", valid, to=TensorProto.FLOAT), g.const(np.array([2]), "ax2")
    )
    x = g.op("Mul", g.op("Gather", "table", g.op("Max", "seq", zero), axis=0), valid_f)
    pos = g.const(net.pos_emb.weight, "pos")  # every position: seq is max_len wide
    x = g.op("Add", g.op("Mul", x, g.const(np.array(math.sqrt(d), f32), "sqrt_dim")), pos)
    x = g.op("Mul", x, valid_f)  # padded positions are zeros
    # where a position may attend: causally, to items, and always to itself
    causal = np.tril(np.ones((length, length), bool))[None]
    eye = np.eye(length, dtype=bool)[None]
    key_ok = g.op(
        "Or", g.op("Unsqueeze", valid, g.const(np.array([1]), "ax1")), g.const(eye, "eye")
    )
    allowed = g.op("Unsqueeze", g.op("And", g.const(causal, "causal"), key_ok), "ax1")
    bias = g.op(
        "Where", allowed, g.const(np.array(0, f32), "f0"), g.const(np.array(-np.inf, f32), "ninf")
    )  # (b, 1, L, L)
    last_pos = (g.const(np.array([length - 1]), "lo"), g.const(np.array([length]), "hi"))
    layers = list(net.encoder.layers)
    for n, layer in enumerate(layers):
        if n == len(layers) - 1:  # the last layer: the last position's output only
            x = _layer(
                g,
                layer,
                x,
                g.op("Slice", bias, *last_pos, g.const(np.array([2]), "sl2")),
                n,
                last_pos,
            )
        else:
            x = _layer(g, layer, x, bias, n, None)
    x = g.op("Gather", x, g.const(np.array(0, np.int64), "first"), axis=1)  # (b, dim)
    norm = net.out_norm
    state = g.op(
        "LayerNormalization",
        x,
        g.const(norm.weight, "out_w"),
        g.const(norm.bias, "out_b"),
        axis=-1,
        epsilon=norm.eps,
    )
    g.nodes.append(helper.make_node("Identity", [state], ["state"]))
    graph = helper.make_graph(
        g.nodes,
        "user_tower_last_state",
        [
            helper.make_tensor_value_info("seq", TensorProto.INT64, ["b", length]),
            helper.make_tensor_value_info("table", TensorProto.FLOAT, ["n", d]),
        ],
        [helper.make_tensor_value_info("state", TensorProto.FLOAT, ["b", d])],
        g.constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def _layer(
    g: _Graph,
    layer: torch.nn.TransformerEncoderLayer,
    x: str,
    bias: str,
    n: int,
    last_pos: tuple[str, str] | None,
) -> str:
    """One ``norm_first`` encoder layer (eval mode); ``last_pos``: its last position only."""
    attn = layer.self_attn
    d, heads = attn.embed_dim, attn.num_heads
    dh = d // heads

    def linear(h: str, module_w: torch.Tensor, module_b: torch.Tensor, name: str) -> str:
        w = g.const(module_w.detach().T.contiguous(), f"l{n}_{name}_w")
        return g.op("Add", g.op("MatMul", h, w), g.const(module_b, f"l{n}_{name}_b"))

    def norm(h: str, module: torch.nn.LayerNorm, name: str) -> str:
        w, b = g.const(module.weight, f"l{n}_{name}_w"), g.const(module.bias, f"l{n}_{name}_b")
        return g.op("LayerNormalization", h, w, b, axis=-1, epsilon=module.eps)

    h = norm(x, layer.norm1, "norm1")
    qkv = linear(h, attn.in_proj_weight, attn.in_proj_bias, "in")
    qkv = g.op("Reshape", qkv, g.const(np.array([0, 0, 3, heads, dh]), f"l{n}_qkv_shape"))
    qkv = g.op("Transpose", qkv, perm=[2, 0, 3, 1, 4])  # (3, b, heads, L, dh)
    q, k, v = (
        g.op("Gather", qkv, g.const(np.array(i, np.int64), f"l{n}_pick{i}"), axis=0)
        for i in range(3)
    )
    if last_pos is not None:
        q = g.op("Slice", q, *last_pos, g.const(np.array([2]), f"l{n}_q_axis"))
        x = g.op("Slice", x, *last_pos, g.const(np.array([1]), f"l{n}_x_axis"))
    scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2]))
    scale = g.const(np.array(1.0 / math.sqrt(dh), np.float32), f"l{n}_scale")
    weights = g.op("Softmax", g.op("Add", g.op("Mul", scores, scale), bias), axis=-1)
    o = g.op("Transpose", g.op("MatMul", weights, v), perm=[0, 2, 1, 3])
    o = g.op("Reshape", o, g.const(np.array([0, -1, d]), f"l{n}_o_shape"))
    x = g.op("Add", x, linear(o, attn.out_proj.weight, attn.out_proj.bias, "out"))
    h = norm(x, layer.norm2, "norm2")
    up = g.op("Gelu", linear(h, layer.linear1.weight, layer.linear1.bias, "up"))
    return g.op("Add", x, linear(up, layer.linear2.weight, layer.linear2.bias, "down"))


class TowerRuntime:
    """``net.last_state`` on ONNX Runtime's CPU provider, with ``net``'s weights as they
    are now (a later change to them is not seen: make a new runtime).

    ``threads``: intra-op threads (default: PyTorch's, so the served process keeps the
    limit it set for both).
    """

    def __init__(self, net: UserTower, *, threads: int | None = None) -> None:
        if net.training:
            raise ValueError("TowerRuntime needs the tower in eval mode")
        self.net = net
        self.max_len = net.max_len
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only
        # idle pool threads sleep: they share the cores with the API workers' other work
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        with torch.no_grad():
            model = tower_graph(net)
        self._session = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )

    def last_state(self, seq: np.ndarray, table: np.ndarray) -> np.ndarray:
        """``(b, dim)`` float32 states of left-padded ``seq`` ``(b, max_len)`` over ``table``."""
        seq = np.ascontiguousarray(seq, dtype=np.int64)
        if seq.ndim != 2 or seq.shape[1] != self.max_len:
            raise ValueError(f"seq: expected (b, {self.max_len}), got {seq.shape}")
        table = np.ascontiguousarray(table, dtype=np.float32)
        return self._session.run(None, {"seq": seq, "table": table})[0]
