"""ONNX export: ONE graph from raw features to the prediction, preprocessing inside.

Inputs are the spec's features by name, each ``[N, 1]``: ``tensor(string)`` for
categoricals (an unknown or empty string falls in the out-of-vocabulary bucket) and
``tensor(float)`` for numerics (NaN = missing). The single output is ``probability``
(classifier) or ``delay_minutes`` (regressor), shape ``[N]``. Features the net ignores
(see the spec's ``ignored_by_net``) stay declared inputs so that the contract does not
change when a later version reads them.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from vigie.features.catalogue import FeatureKind
from vigie.training.preprocess import OOV_INDEX
from vigie.training.train import TrainedModel

#: ONNX opsets of the exported graph (default domain, ai.onnx.ml for LabelEncoder).
OPSET = 17
ML_OPSET = 2
BATCH = "batch"
_CATS, _NUMS = "net_categorical_indices", "net_numeric_block"


def export_onnx(trained: TrainedModel, path: Path) -> Path:
    """Write the model, preprocessing included, as one ONNX file.

    Args:
        trained: The trained model.
        path: Where to write the ``.onnx`` file (its folder is created).

    Returns:
        The path written.
    """
    net = _export_net(trained)
    graph = net.graph
    nodes = _categorical_nodes(trained) + _numeric_nodes(trained)
    inputs = [_input(f.name, f.kind) for f in trained.spec.feature_defs()]
    del graph.input[:]
    graph.input.extend(inputs)
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    graph.initializer.extend(_initializers(trained))
    net.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    graph.name = trained.spec.name
    _metadata(net, trained)
    onnx.checker.check_model(net, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(net, str(path))
    return path


def _export_net(trained: TrainedModel) -> onnx.ModelProto:
    pre = trained.preprocessor
    cats = torch.zeros((2, len(pre.categorical)), dtype=torch.int64)
    nums = torch.zeros((2, pre.numeric_width), dtype=torch.float32)
    buffer = io.BytesIO()
    output = trained.spec.target.output
    # The TorchScript exporter is deprecated but exact for this static MLP, and keeps
    # the graph plain (no onnxscript functions) for merging with the preprocessing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            trained.head.eval(),
            (cats, nums),
            buffer,  # type: ignore[arg-type]  # a file-like object is accepted
            input_names=[_CATS, _NUMS],
            output_names=[output],
            dynamic_axes={_CATS: {0: BATCH}, _NUMS: {0: BATCH}, output: {0: BATCH}},
            opset_version=OPSET,
            dynamo=False,
        )
    return onnx.load_model_from_string(buffer.getvalue())


def _input(name: str, kind: FeatureKind) -> onnx.ValueInfoProto:
    dtype = TensorProto.STRING if kind is FeatureKind.CATEGORICAL else TensorProto.FLOAT
    return helper.make_tensor_value_info(name, dtype, [BATCH, 1])


def _categorical_nodes(trained: TrainedModel) -> list[onnx.NodeProto]:
    pre = trained.preprocessor
    nodes = []
    for name in pre.categorical:
        vocabulary = list(pre.vocabularies[name])
        nodes.append(
            helper.make_node(
                "LabelEncoder",
                [name],
                [f"{name}__index"],
                domain="ai.onnx.ml",
                keys_strings=vocabulary or ["\x00"],
                values_int64s=list(range(1, len(vocabulary) + 1)) or [OOV_INDEX],
                default_int64=OOV_INDEX,
            )
        )
    indices = [f"{name}__index" for name in pre.categorical]
    nodes.append(helper.make_node("Concat", indices, [_CATS], axis=1))
    return nodes


def _numeric_nodes(trained: TrainedModel) -> list[onnx.NodeProto]:
    names = list(trained.preprocessor.numeric)
    # Same float32 operations, in the same order, as Preprocessor.encode.
    return [
        helper.make_node("Concat", names, ["num__raw"], axis=1),
        helper.make_node("IsNaN", ["num__raw"], ["num__missing"]),
        helper.make_node("Where", ["num__missing", "num__means", "num__raw"], ["num__imputed"]),
        helper.make_node("Sub", ["num__imputed", "num__means"], ["num__centred"]),
        helper.make_node("Div", ["num__centred", "num__stds"], ["num__scaled"]),
        helper.make_node("Cast", ["num__missing"], ["num__indicators"], to=TensorProto.FLOAT),
        helper.make_node("Concat", ["num__scaled", "num__indicators"], [_NUMS], axis=1),
    ]


def _initializers(trained: TrainedModel) -> list[onnx.TensorProto]:
    pre = trained.preprocessor
    means = np.asarray(pre.means, dtype=np.float32)
    stds = np.asarray(pre.stds, dtype=np.float32)
    return [
        numpy_helper.from_array(means, "num__means"),
        numpy_helper.from_array(stds, "num__stds"),
    ]


def _metadata(model: onnx.ModelProto, trained: TrainedModel) -> None:
    spec = trained.spec
    entries = {
        "vigie.model": spec.name,
        "vigie.task": spec.task.value,
        "vigie.output": spec.target.output,
        "vigie.features": json.dumps(list(spec.features)),
        "vigie.ignored_by_net": json.dumps([i.name for i in spec.ignored_by_net]),
        "vigie.snapshot_hash": str(trained.snapshot.get("snapshot_hash", "")),
        "vigie.seed": str(trained.seed),
        "vigie.missing": "categorical: empty string or unknown -> OOV bucket; numeric: NaN",
    }
    model.producer_name = "vigie"
    onnx.helper.set_model_props(model, entries)
