"""The ONNX checker on an exported model, as the export tests run it: python3 check_model.py
MODEL. Exits non-zero, with the checker's message, when the model is not valid ONNX (full_check
also runs shape inference over every node)."""
import sys

import onnx

model = onnx.load(sys.argv[1])
onnx.checker.check_model(model, full_check=True)
print("ok", model.graph.name, "opset", model.opset_import[0].version,
      "inputs", [i.name for i in model.graph.input], "outputs", [o.name for o in model.graph.output])
