#include "worker/inference/onnx_export.h"

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/atomic_file.h"
#include "common/version.h"

namespace trellis::worker {
namespace {

constexpr int kOpset = 13;  // Softmax over one axis (13 redefined it), what every runtime has
constexpr int kIrVersion = 7;  // what opset 13 shipped with
// The trainer's gelu constants (worker/models/mlp.cc).
constexpr float kGeluC = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluK = 0.044715f;

class GraphBuilder {
 public:
  explicit GraphBuilder(onnx::GraphProto* graph) : graph_(graph) {}

  // A float initializer of `dims` holding `values` (row-major).
  std::string constant(const std::string& name, std::vector<std::int64_t> dims,
                       const float* values, std::size_t count) {
    onnx::TensorProto* t = graph_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (const std::int64_t d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(values), count * sizeof(float)));
    return name;
  }
  std::string scalar(const std::string& name, float v) { return constant(name, {}, &v, 1); }

  // A node of `op` over `inputs`, its one output named `out` (or a fresh name).
  onnx::NodeProto* node(const std::string& op, std::vector<std::string> inputs,
                        std::string out = "") {
    onnx::NodeProto* n = graph_->add_node();
    n->set_op_type(op);
    if (out.empty()) out = op + "_" + std::to_string(next_++);
    n->set_name(out);
    for (const std::string& in : inputs) n->add_input(in);
    n->add_output(out);
    return n;
  }
  std::string op(const std::string& op, std::vector<std::string> inputs, std::string out = "") {
    return node(op, std::move(inputs), std::move(out))->output(0);
  }

  void value_info(onnx::ValueInfoProto* v, const std::string& name, int elem_type,
                  std::vector<std::int64_t> dims) {
    v->set_name(name);
    onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(elem_type);
    onnx::TensorShapeProto* shape = t->mutable_shape();
    for (const std::int64_t d : dims) {
      onnx::TensorShapeProto_Dimension* dim = shape->add_dim();
      if (d < 0) dim->set_dim_param("batch");
      else dim->set_dim_value(d);
    }
  }
  void input(const std::string& name, int elem_type, std::vector<std::int64_t> dims) {
    value_info(graph_->add_input(), name, elem_type, std::move(dims));
  }
  void output(const std::string& name, int elem_type, std::vector<std::int64_t> dims) {
    value_info(graph_->add_output(), name, elem_type, std::move(dims));
  }

 private:
  onnx::GraphProto* graph_;
  int next_ = 0;
};

void set_int(onnx::NodeProto* n, const std::string& name, std::int64_t v) {
  onnx::AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}

// 0.5 x (1 + tanh(c (x + k x^3))), as mlp.cc's gelu_t and gelu_value evaluate it.
std::string gelu(GraphBuilder& g, const std::string& x, const std::string& c,
                 const std::string& k, const std::string& half, const std::string& one) {
  const std::string cube = g.op("Mul", {g.op("Mul", {x, x}), x});
  const std::string inner = g.op("Add", {x, g.op("Mul", {k, cube})});
  const std::string t = g.op("Tanh", {g.op("Mul", {c, inner})});
  return g.op("Mul", {g.op("Mul", {half, x}), g.op("Add", {one, t})});
}

}  // namespace

Status export_onnx(const TrainedModel& model, const std::string& name, const std::string& path) {
  if (model.is_cnn())
    return Status::Error(model.path + ": ONNX export of a cnn is not supported yet (only " +
                         "linear, logistic, softmax and mlp); `trellis predict` serves it");
  onnx::ModelProto proto;
  proto.set_ir_version(kIrVersion);
  proto.set_producer_name("trellis");
  proto.set_producer_version(TRELLIS_VERSION);
  proto.set_doc_string("exported by trellis export-model from " + model.path);
  onnx::OperatorSetIdProto* opset = proto.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  onnx::GraphProto* graph = proto.mutable_graph();
  graph->set_name(name);
  GraphBuilder g(graph);

  const MlpShape& shape = model.shape;
  const std::int64_t f = shape.inputs;
  g.input("features", onnx::TensorProto::FLOAT, {-1, f});
  std::string h = "features";
  if (!model.scale_mean.empty()) {
    const std::string mean = g.constant("scale.mean", {f}, model.scale_mean.data(), model.scale_mean.size());
    const std::string inv_std =
        g.constant("scale.inv_std", {f}, model.scale_inv_std.data(), model.scale_inv_std.size());
    h = g.op("Mul", {g.op("Sub", {h, mean}, "centred"), inv_std}, "scaled");
  }

  std::string c, k, half, one;
  if (shape.activation == Activation::kGelu && !shape.hidden.empty()) {
    c = g.scalar("gelu.c", kGeluC);
    k = g.scalar("gelu.k", kGeluK);
    half = g.scalar("gelu.half", 0.5f);
    one = g.scalar("gelu.one", 1.0f);
  }
  // The flat params buffer, layer by layer: W (out x in, column-major, i.e. in x out row-major:
  // Gemm's B as it is) then b.
  std::int64_t in = f;
  std::size_t offset = 0;
  const int layers = static_cast<int>(shape.hidden.size()) + 1;
  for (int l = 0; l < layers; ++l) {
    const bool last = l + 1 == layers;
    const std::int64_t out = last ? shape.outputs : shape.hidden[static_cast<std::size_t>(l)];
    const std::string tag = "layer" + std::to_string(l);
    const std::string w = g.constant(tag + ".W", {in, out}, model.params.data() + offset,
                                     static_cast<std::size_t>(in * out));
    offset += static_cast<std::size_t>(in * out);
    const std::string b = g.constant(tag + ".b", {out}, model.params.data() + offset,
                                     static_cast<std::size_t>(out));
    offset += static_cast<std::size_t>(out);
    h = g.op("Gemm", {h, w, b}, last ? "logits" : tag + ".z");
    if (!last) {
      switch (shape.activation) {
        case Activation::kRelu: h = g.op("Relu", {h}, tag + ".a"); break;
        case Activation::kTanh: h = g.op("Tanh", {h}, tag + ".a"); break;
        case Activation::kGelu: h = gelu(g, h, c, k, half, one); break;
      }
    }
    in = out;
  }
  if (offset != model.params.size())
    return Status::Error(model.path + ": params buffer of " + std::to_string(model.params.size()) +
                         " floats, the layers use " + std::to_string(offset));

  switch (shape.head) {
    case Head::kSquaredError: {
      std::string value = h;
      if (model.target_scaled) {
        const std::string std_ = g.scalar("target.std", model.target_std);
        const std::string mean = g.scalar("target.mean", model.target_mean);
        value = g.op("Add", {g.op("Mul", {h, std_}), mean}, "value");
      } else {
        value = g.op("Identity", {h}, "value");
      }
      g.output(value, onnx::TensorProto::FLOAT, {-1, 1});
      break;
    }
    case Head::kSoftmaxCe: {
      set_int(g.node("Softmax", {h}, "probabilities"), "axis", 1);
      onnx::NodeProto* argmax = g.node("ArgMax", {h}, "class");
      set_int(argmax, "axis", 1);
      set_int(argmax, "keepdims", 0);
      g.output("probabilities", onnx::TensorProto::FLOAT, {-1, shape.outputs});
      g.output("class", onnx::TensorProto::INT64, {-1});
      break;
    }
    case Head::kSigmoidBce: {
      const std::string p = g.op("Sigmoid", {h}, "p1");
      const std::string one_ = one.empty() ? g.scalar("one", 1.0f) : one;
      set_int(g.node("Concat", {g.op("Sub", {one_, p}, "p0"), p}, "probabilities"), "axis", 1);
      const std::string zero = g.scalar("zero", 0.0f);
      const std::int64_t axes[] = {1};
      const std::string squeeze_axes = "squeeze.axes";
      {
        onnx::TensorProto* t = graph->add_initializer();
        t->set_name(squeeze_axes);
        t->set_data_type(onnx::TensorProto::INT64);
        t->add_dims(1);
        t->set_raw_data(std::string(reinterpret_cast<const char*>(axes), sizeof axes));
      }
      const std::string positive = g.op("Greater", {h, zero});
      onnx::NodeProto* cast = g.node("Cast", {g.op("Squeeze", {positive, squeeze_axes})}, "class");
      set_int(cast, "to", onnx::TensorProto::INT64);
      g.output("probabilities", onnx::TensorProto::FLOAT, {-1, 2});
      g.output("class", onnx::TensorProto::INT64, {-1});
      break;
    }
  }

  std::string bytes;
  if (!proto.SerializeToString(&bytes))
    return Status::Error("ONNX model " + path + ": protobuf could not serialise it");
  return write_file_atomically(path, bytes, "ONNX model " + path);
}

}  // namespace trellis::worker
