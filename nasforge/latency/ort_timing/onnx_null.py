"""The null model: an ONNX model written as raw protobuf bytes (a board has no onnx package)."""

from __future__ import annotations


def null_model() -> bytes:
    """A one-op ONNX model on a 1-element tensor, written without the onnx package (the bundle has none).

    Timed like a block, it gives the fixed per-run cost (session.run, input and output binding)
    that every isolated block timing carries and a whole network pays once.
    """

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            byte = n & 0x7F
            n >>= 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def field(num: int, payload: bytes) -> bytes:  # length-delimited protobuf field
        return varint(num << 3 | 2) + varint(len(payload)) + payload

    def intfield(num: int, value: int) -> bytes:
        return varint(num << 3) + varint(value)

    def value_info(name: str) -> bytes:  # ValueInfoProto{name, type{tensor_type{elem_type FLOAT, shape [1]}}}
        dim = field(1, intfield(1, 1))  # TensorShapeProto.dim{dim_value: 1}
        tensor = intfield(1, 1) + field(2, dim)
        return field(1, name.encode()) + field(2, field(1, tensor))

    node = field(1, b"x") + field(2, b"y") + field(4, b"Relu")
    graph = field(1, node) + field(2, b"null") + field(11, value_info("x")) + field(12, value_info("y"))
    opset = field(1, b"") + intfield(2, 17)
    return intfield(1, 8) + field(7, graph) + field(8, opset)  # ir_version 8


