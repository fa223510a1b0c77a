"""Which nodes of an exported graph stay in float whatever the gate decides: a detector's decoding and NMS.

Quantizing box arithmetic (exp, the point grid, the corner sums) and the scores NMS ranks costs localisation
precision for no speed (they are a few element-wise ops beside the convolutions), and Q/DQ around
NonMaxSuppression/TopK would break TensorRT's EfficientNMS swap. The rule is structural, not by name: every
node on the way to the named outputs that has no compute node (Conv, Gemm, MatMul) after it is post-processing.
"""

from __future__ import annotations

from pathlib import Path

COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def float_tail(model_path: Path, outputs: list[str]) -> list[str]:
    """Names of the nodes that feed `outputs` and have no Conv/Gemm/MatMul downstream (graph order)."""
    if not outputs:
        return []
    import onnx

    g = onnx.load(str(model_path), load_external_data=False).graph
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    producer = {o: n for n in g.node for o in n.output}
    # nodes that lead to one of the outputs
    feeds, stack = set(), [producer[o] for o in outputs if o in producer]
    while stack:
        n = stack.pop()
        if id(n) in feeds:
            continue
        feeds.add(id(n))
        stack.extend(producer[i] for i in n.input if i in producer)
    # nodes with a compute node after them (memoised walk in reverse graph order)
    compute_after: dict[int, bool] = {}
    for n in reversed(list(g.node)):
        nxt = [c for o in n.output for c in consumers.get(o, [])]
        compute_after[id(n)] = any(c.op_type in COMPUTE_OPS or compute_after.get(id(c), False) for c in nxt)
    return [n.name for n in g.node if id(n) in feeds and not compute_after[id(n)] and n.op_type not in COMPUTE_OPS
            and n.name]  # fmt: skip


def postprocessed_outputs(loaded) -> list[str]:
    """The model outputs whose task kind decodes in the graph (`TaskKind.float_postprocess`)."""
    from edgetl.runtime.tasks import get_kind

    out = []
    for _name, kind, output, fmt in loaded.model.output_tasks():
        if get_kind(kind).float_postprocess and fmt != "raw":
            out.extend(get_kind(kind).output_names(output, fmt))
    return out
