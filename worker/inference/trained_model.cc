#include "worker/inference/trained_model.h"

#include <charconv>
#include <cstdint>
#include <sstream>

#include "worker/checkpoint.h"

namespace trellis::worker {
namespace {

// The trainer's fingerprint is words "name=value"; the input count is "features=N".
int fingerprint_features(const std::string& fingerprint) {
  std::istringstream words(fingerprint);
  std::string word;
  const std::string key = "features=";
  while (words >> word) {
    if (word.rfind(key, 0) != 0) continue;
    int n = 0;
    const char* begin = word.data() + key.size();
    const char* end = word.data() + word.size();
    const auto [ptr, ec] = std::from_chars(begin, end, n);
    if (ec == std::errc() && ptr == end) return n;
  }
  return 0;
}

// Both buffers of a pair, or neither.
Status find_pair(const Checkpoint& c, const std::string& path, const std::string& a,
                 const std::string& b, const std::vector<float>** pa,
                 const std::vector<float>** pb) {
  *pa = c.find(a);
  *pb = c.find(b);
  if ((*pa == nullptr) != (*pb == nullptr))
    return Status::Error(path + ": has buffer '" + (*pa ? a : b) + "' but not '" + (*pa ? b : a) +
                         "'");
  return Status::Ok();
}

// A cnn's output layer is (last width + 1) x classes, the rest fixed by the layers: two shapes
// that differ only in their class count give both.
Status load_cnn(const std::string& path, int inputs, const std::vector<float>& weights,
                TrainedModel m, TrainedModel* out) {
  CnnShape two, three;
  if (Status s = cnn_shape_from_config(m.config, inputs, 2, 0, &two); !s.ok())
    return Status::Error(path + ": " + s.message());
  (void)cnn_shape_from_config(m.config, inputs, 3, 0, &three);
  const std::int64_t base = Cnn(two, 1).num_params();
  const std::int64_t per_class = Cnn(three, 1).num_params() - base;
  const auto total = static_cast<std::int64_t>(weights.size());
  if (total < base || (total - base) % per_class != 0)
    return Status::Error(path + ": its params buffer holds " + std::to_string(total) +
                         " floats, which fits no cnn of layers '" + m.config.layers +
                         "' on " + std::to_string(inputs) +
                         " inputs (the trial's parameters and the file disagree)");
  const int classes = static_cast<int>(2 + (total - base) / per_class);
  if (Status s = cnn_shape_from_config(m.config, inputs, classes, 0, &m.cnn); !s.ok())
    return Status::Error(path + ": " + s.message());
  m.shape = MlpShape{};
  m.shape.inputs = inputs;
  m.shape.outputs = classes;
  m.shape.head = Head::kSoftmaxCe;
  m.params = weights;
  *out = std::move(m);
  return Status::Ok();
}

}  // namespace

std::unique_ptr<Model> make_network(const TrainedModel& model, int max_batch) {
  std::unique_ptr<Model> net;
  if (model.is_cnn()) {
    net = std::make_unique<Cnn>(model.cnn, max_batch);
  } else {
    net = std::make_unique<Mlp>(model.shape, max_batch);
  }
  net->params() = Eigen::Map<const Eigen::VectorXf>(model.params.data(),
                                                    static_cast<Eigen::Index>(model.params.size()));
  return net;
}

Status load_trained_model(const std::string& path, const ParamMap& params, TrainedModel* out) {
  Checkpoint c;
  if (Status s = read_checkpoint(path, &c); !s.ok()) return s;
  TrainedModel m;
  m.path = path;
  if (Status s = train_config_from_params(params, &m.config); !s.ok())
    return Status::Error(path + ": the trial's parameters: " + s.message());
  const std::vector<float>* weights = c.find("params");
  if (weights == nullptr) return Status::Error(path + ": no 'params' buffer (not a trained model)");
  const std::vector<float>*mean = nullptr, *inv_std = nullptr, *t_mean = nullptr, *t_std = nullptr;
  if (Status s = find_pair(c, path, "scale.mean", "scale.inv_std", &mean, &inv_std); !s.ok())
    return s;
  if (Status s = find_pair(c, path, "target.mean", "target.std", &t_mean, &t_std); !s.ok())
    return s;

  int inputs = fingerprint_features(c.fingerprint);
  if (mean != nullptr) {
    if (mean->size() != inv_std->size())
      return Status::Error(path + ": scale.mean has " + std::to_string(mean->size()) +
                           " floats but scale.inv_std " + std::to_string(inv_std->size()));
    if (inputs == 0) inputs = static_cast<int>(mean->size());
    if (static_cast<std::size_t>(inputs) != mean->size())
      return Status::Error(path + ": the model was trained on " + std::to_string(inputs) +
                           " features but its scaling has " + std::to_string(mean->size()));
    m.scale_mean = *mean;
    m.scale_inv_std = *inv_std;
  }
  if (inputs < 1)
    return Status::Error(path + ": says nothing of its input count (no 'features=' in its "
                         "fingerprint '" + c.fingerprint + "', no scaling buffers)");
  if (t_mean != nullptr) {
    if (t_mean->size() != 1 || t_std->size() != 1)
      return Status::Error(path + ": target.mean and target.std must hold one float each, they "
                           "hold " + std::to_string(t_mean->size()) + " and " +
                           std::to_string(t_std->size()));
    m.target_scaled = true;
    m.target_mean = (*t_mean)[0];
    m.target_std = (*t_std)[0];
  }

  if (m.config.model == "cnn") return load_cnn(path, inputs, *weights, std::move(m), out);
  // Hidden layers' parameters are fixed by the inputs and sizes; what remains is
  // (last width + 1) x outputs.
  const std::vector<int> hidden = hidden_sizes(m.config);
  std::int64_t fixed = 0;
  std::int64_t width = inputs;
  for (const int units : hidden) {
    fixed += (width + 1) * units;
    width = units;
  }
  const auto total = static_cast<std::int64_t>(weights->size());
  const std::int64_t rest = total - fixed;
  const std::int64_t outputs = rest > 0 && rest % (width + 1) == 0 ? rest / (width + 1) : 0;
  const bool one_output = m.config.model == "linear" || m.config.model == "logistic";
  std::string layers = std::to_string(inputs);
  for (const int units : hidden) layers += "-" + std::to_string(units);
  if (outputs < 1 || (one_output && outputs != 1) || (!one_output && outputs < 2))
    return Status::Error(path + ": its params buffer holds " + std::to_string(total) +
                         " floats, which fits no " + m.config.model + " of layers " + layers +
                         "-outputs (the trial's parameters and the file disagree)");
  const int classes = one_output ? (m.config.model == "logistic" ? 2 : 0) : static_cast<int>(outputs);
  if (Status s = mlp_shape_from_config(m.config, inputs, classes, &m.shape); !s.ok())
    return Status::Error(path + ": " + s.message());
  m.shape.dropout = 0.0f;
  m.params = *weights;
  *out = std::move(m);
  return Status::Ok();
}

}  // namespace trellis::worker
