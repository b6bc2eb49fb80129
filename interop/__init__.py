"""timeloom interop: ONNX import/export and PyTorch state_dict import, parameter files.

- `import_onnx(model) -> OnnxImport`: LSTM / GRU / RNN nodes (+ the affine, activation and
  layout nodes around them) -> spec dict + parameters (+ the ONNX <-> timeloom I/O mapping).
- `export_onnx(program, params) -> onnx.ModelProto`: standard LSTM / GRU / RNN operators where
  a recurrence is exactly one, a Scan over the primitives otherwise.
- `import_torch(state_dict) -> TorchImport`: nn.RNN / nn.LSTM / nn.GRU state_dicts.
- `load_params(net, path)` / `save_params(net, path)`: .npz files of arrays named as in docs/ARCHITECTURE.md.
- `mapping`: the weight mappings (gate orders, bias sums, peepholes, coupled gates).
onnx, onnxruntime and torch are imported only when used.
"""
from .errors import InteropError, ParamsError, UnsupportedError
from .params import load_params, save_params


def import_onnx(model, name=None):
    from .onnx_import import import_onnx as _import
    return _import(model, name)


def export_onnx(program, params, dtype="float32", standard_ops=True):
    from .onnx_export import export_onnx as _export
    return _export(program, params, dtype=dtype, standard_ops=standard_ops)


def import_torch(state, kind=None, nonlinearity="tanh", module=None, name="torch_import"):
    from .torch_import import import_torch as _import
    return _import(state, kind=kind, nonlinearity=nonlinearity, module=module, name=name)


__all__ = ["InteropError", "ParamsError", "UnsupportedError", "export_onnx", "import_onnx", "import_torch",
           "load_params", "save_params"]
