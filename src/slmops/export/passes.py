"""Graph passes over an exported ONNX decoder (optimum's KV-cache graph) that make it serve faster, same answers.

Usage:
    share_kv_heads(onnx_dir / "model.onnx", heads=14, kv_heads=2)   # export_onnx runs it; returns MatMuls changed
    last_position_logits(form_dir / "model.onnx")                   # each quantized form (quantize.py) runs it

**Shared KV heads.** optimum exports a GQA model's attention (Qwen2, Llama, Mistral, ...) as transformers' math
path writes it: each layer's key and value, [batch, kv heads, length, head size], are repeated to every query head
(Unsqueeze -> Expand -> Reshape, ``repeat_kv``) before the two attention MatMuls. That copies the whole cache at
every decode step: at Qwen2.5-0.5B's shapes (14 heads on 2 KV heads), int4, 8 rows and 180 cached tokens, the
Expands were 18% of a step (``benchmarks/decode_step.py --ops``). The pass lets the MatMuls read the shared heads:
- scores: the query [b, heads, s, d] is viewed as [b, kv heads, group * s, d] (query head h = kv * group + r
  becomes rows r * s .. r * s + s - 1 of KV head kv), multiplied by the transposed, scaled key, and the product
  [b, kv heads, group * s, t] is viewed back as [b, heads, s, t] before the mask;
- output: the probabilities are viewed the same way, multiplied by the value, and viewed back as [b, heads, s, d].
Each output element is the same dot product as before, of the same numbers. A graph without the pattern (heads
equal to KV heads: no repeat) is left unchanged. Shape nodes that read the repeated tensor's length read the
un-repeated one (the same length) so the Expand is really gone.

**Last-position logits.** The export computes the LM head at every prompt position, and a generation reads only
the last. With a real vocabulary the LM head is a large share of a prefill (Qwen2.5-0.5B: 136M of its 494M
multiply-adds a token); the pass slices the final hidden state to its last position before the LM head, so
``logits`` is [batch, 1, vocab]. The ONNX fp32 export keeps every position: parity compares its prompt logits
with torch's (``evaluate/parity.py``).
"""

from __future__ import annotations

from pathlib import Path


def share_kv_heads(path: Path, heads: int, kv_heads: int) -> int:
    """Rewrite the repeated-KV attention of the ONNX graph at ``path`` in place; the number of MatMuls changed."""
    import onnx

    if kv_heads >= heads:
        return 0
    model = onnx.load(str(path), load_external_data=False)  # weights stay where they are
    graph = Graph(model.graph)
    changed = sum(graph.rewrite(expand, heads, kv_heads) for expand in graph.nodes("Expand"))
    if changed:
        graph.drop_dead_nodes()
        onnx.save(model, str(path))
    return changed


def last_position_logits(path: Path, right_padded: bool = False) -> bool:
    """Give the LM head of the ONNX graph at ``path`` only each row's last position, in place; False if the graph
    has no ``logits`` output made by a MatMul (through elementwise ops such as a soft cap) or is sliced already.

    Left-padded rows (optimum's graphs, as our batchers pad) end at the last position. ``right_padded`` rows (GenAI,
    which pads each prompt on the right) end at their last real token among this call's: the count of ones in
    the last ``sequence_length`` columns of ``attention_mask``, less one (0 in a decode step)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = Graph(model.graph)
    head = graph.lm_head()
    if head is None:
        return False
    hidden = head.input[0]  # the final hidden state (for dynamic int8: what DynamicQuantizeLinear quantizes)
    head.input[0] = graph.last_real_position(hidden, head) if right_padded else graph.last_position(hidden, head)
    logits = next(out for out in model.graph.output if out.name == "logits")
    dims = logits.type.tensor_type.shape.dim
    if len(dims) == 3:
        dims[1].Clear()
        dims[1].dim_value = 1
    onnx.save(model, str(path))
    return True


ELEMENTWISE = ("Mul", "Div", "Add", "Sub", "Tanh", "Cast", "Identity")  # between the LM head and ``logits``
HEADS = ("MatMul", "MatMulNBits", "DynamicQuantizeMatMul", "MatMulInteger")  # a Gemm is 2-D: never a [b, s, h] head


class Graph:
    """An ONNX graph with its producer and consumer maps, rebuilt after each change."""

    def __init__(self, graph):
        self.graph = graph
        self.index()

    def index(self) -> None:
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def lm_head(self):
        """The node whose first input is the final hidden state: the MatMul that makes ``logits`` (through
        elementwise ops), or for a dynamic-int8 head (MatMulInteger -> Cast -> Mul by the scales) the
        DynamicQuantizeLinear feeding it. None if there is no such node or this pass already sliced its input."""
        node = self.producer.get("logits")
        while node is not None and node.op_type in ELEMENTWISE:
            moving = [self.producer[i] for i in node.input if i in self.producer and self.constant(i) is None]
            casts = [n for n in moving if n.op_type == "Cast"]  # int8: Mul(Cast(MatMulInteger), scales)
            node = moving[0] if len(moving) == 1 else casts[0] if len(casts) == 1 else None
        if node is None or node.op_type not in HEADS:
            return None
        if node.op_type == "MatMulInteger":
            node = self.only_user_quantizer(node)
        before = self.producer.get(node.input[0]) if node is not None else None
        done = before is not None and before.op_type in ("Slice", "GatherElements")  # sliced by this pass already
        return None if node is None or done else node

    def only_user_quantizer(self, matmul):
        """The DynamicQuantizeLinear that quantizes ``matmul``'s activations for it alone, else None."""
        node = self.producer.get(matmul.input[0])
        if node is None or node.op_type != "DynamicQuantizeLinear":
            return None
        alone = len(self.consumers.get(node.input[0], [])) == 1
        return node if alone and len(self.consumers.get(node.output[0], [])) == 1 else None

    def nodes(self, op_type: str) -> list:
        return [node for node in self.graph.node if node.op_type == op_type]

    def constant(self, name: str):
        """The value of ``name`` if a Constant node or an initializer makes it, else None."""
        from onnx import numpy_helper

        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute:
            return numpy_helper.to_array(node.attribute[0].t)
        for init in self.graph.initializer:
            if init.name == name and not init.external_data:
                return numpy_helper.to_array(init)
        return None

    def rewrite(self, expand, heads: int, kv_heads: int) -> int:
        """Replace one repeated key or value (``expand`` and its Unsqueeze and Reshape) feeding an attention MatMul."""
        unsqueeze = self.producer.get(expand.input[0])
        axes = self.constant(unsqueeze.input[1]) if unsqueeze is not None and len(unsqueeze.input) > 1 else None
        if unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or axes is None or list(axes.ravel()) != [2]:
            return 0
        shared = unsqueeze.input[0]  # [b, kv heads, t, d]
        after = self.consumers.get(expand.output[0], [])
        if len(after) != 1 or after[0].op_type != "Reshape":
            return 0
        reshape = after[0]
        users = self.consumers.get(reshape.output[0], [])
        shapes = [node for node in users if node.op_type == "Shape"]
        rest = [node for node in users if node.op_type != "Shape"]
        if len(rest) != 1 or not all(self.reads_no_head_axis(node) for node in shapes):
            return 0
        matmul, key = self.key_path(rest[0]) if rest[0].op_type == "Transpose" else (rest[0], None)
        if matmul is None or matmul.op_type != "MatMul" or matmul.input[1] != (key or reshape).output[0]:
            return 0
        for node in shapes:
            node.input[0] = shared
        self.replace(matmul, shared, key, heads, kv_heads)
        self.index()
        return 1

    def key_path(self, transpose):
        """Key: Transpose(0, 1, 3, 2) -> Mul(by a scalar) -> MatMul; (the MatMul, the Mul), else (None, None)."""
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
        after = self.consumers.get(transpose.output[0], [])
        if perm != [0, 1, 3, 2] or len(after) != 1 or after[0].op_type != "Mul":
            return None, None
        mul = after[0]
        scale = self.constant(mul.input[1])
        users = self.consumers.get(mul.output[0], [])
        if scale is None or scale.size != 1 or len(users) != 1:
            return None, None
        return users[0], mul

    def reads_no_head_axis(self, shape) -> bool:
        """A Shape node whose every use is a Gather of an axis other than the head axis (1)."""
        users = self.consumers.get(shape.output[0], [])
        indices = [self.constant(node.input[1]) if node.op_type == "Gather" else None for node in users]
        return all(i is not None and i.size == 1 and int(i) not in (1, -3) for i in indices)

    def replace(self, matmul, shared: str, key, heads: int, kv_heads: int) -> None:
        """New nodes computing ``matmul``'s output from ``shared``; the old ones are dropped once unused."""
        from onnx import helper

        name = matmul.name or matmul.output[0]
        grouped = self.add_const(f"{name}/gqa_grouped", [0, kv_heads, -1, 0])
        per_head = self.add_const(f"{name}/gqa_per_head", [0, heads, -1, 0])
        right = shared
        if key is not None:  # the key: transposed to [b, kv heads, d, t] and scaled, as before
            right = f"{name}/gqa_key_t"
            scaled = f"{name}/gqa_key_scaled"
            self.insert(matmul, helper.make_node("Transpose", [shared], [right], perm=[0, 1, 3, 2], name=right))
            self.insert(matmul, helper.make_node("Mul", [right, key.input[1]], [scaled], name=scaled))
            right = scaled
        left = f"{name}/gqa_left"
        product = f"{name}/gqa_product"
        self.insert(matmul, helper.make_node("Reshape", [matmul.input[0], grouped], [left], name=left))
        self.insert(matmul, helper.make_node("MatMul", [left, right], [product], name=product))
        back = helper.make_node("Reshape", [product, per_head], [matmul.output[0]], name=f"{name}/gqa_back")
        self.insert(matmul, back)
        self.graph.node.remove(matmul)

    def last_position(self, hidden: str, head) -> str:
        """``hidden`` [b, s, h] sliced to its last position [b, 1, h], computed just before ``head``."""
        from onnx import helper

        out = "/lm_head/last_position_output_0"
        ends = self.add_const("/lm_head/last_ends", [2**63 - 1])
        inputs = [hidden, self.add_const("/lm_head/last_starts", [-1]), ends, self.add_const("/lm_head/last_axes", [1])]
        self.insert(head, helper.make_node("Slice", inputs, [out], name="/lm_head/last_position"))
        return out

    def last_real_position(self, hidden: str, head) -> str:
        """``hidden`` [b, s, h] at each row's last real token, [b, 1, h]: ``attention_mask``'s last s columns say
        how many of the row's s new tokens are real (the rest are right padding)."""
        from onnx import TensorProto, helper

        def node(op: str, inputs: list[str], **attrs) -> str:
            name = f"/lm_head/last_real/{op}_{len(self.graph.node)}"
            self.insert(head, helper.make_node(op, inputs, [f"{name}_output_0"], name=name, **attrs))
            return f"{name}_output_0"

        zero, one, two, three = (self.add_const(f"/lm_head/last_real/const_{v}", [v]) for v in (0, 1, 2, 3))
        end = self.add_const("/lm_head/last_real/const_end", [2**63 - 1])
        length = node("Shape", ["input_ids"], start=1, end=2)  # [s]
        mask = node("Cast", [node("Slice", ["attention_mask", node("Neg", [length]), end, one])], to=TensorProto.INT64)
        last = node("Sub", [node("ReduceSum", [mask, one], keepdims=1), one])  # [b, 1]
        last = node("Max", [last, zero])  # a row with no real token among these (never sent) reads position 0
        shape = node("Shape", [hidden])
        size = node("Concat", [node("Slice", [shape, zero, one]), one, node("Slice", [shape, two, three])], axis=0)
        index = node("Expand", [node("Unsqueeze", [last, two]), size])  # [b, 1, h]
        return node("GatherElements", [hidden, index], axis=1)

    def add_const(self, name: str, values: list[int]) -> str:
        import numpy as np
        from onnx import helper, numpy_helper

        tensor = numpy_helper.from_array(np.array(values, dtype=np.int64), name)
        self.graph.node.insert(0, helper.make_node("Constant", [], [name], value=tensor, name=name))
        return name

    def insert(self, before, node) -> None:
        """Put ``node`` just before ``before`` (the graph's nodes stay in topological order)."""
        position = list(self.graph.node).index(before)
        self.graph.node.insert(position, node)

    def drop_dead_nodes(self) -> None:
        """Remove nodes none of whose outputs is used (by a node or as a graph output), until none is left."""
        outputs = {out.name for out in self.graph.output}
        while True:
            self.index()
            dead = [n for n in self.graph.node if not any(o in outputs or o in self.consumers for o in n.output)]
            if not dead:
                return
            for node in dead:
                self.graph.node.remove(node)
