#include "common/train_config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <set>

#include "common/cnn_layers.h"

namespace trellis {
namespace {

// Limits of the layer list: the same as hidden_layers and hidden_units allow.
constexpr int kMaxHiddenLayers = 16;
constexpr int kMaxLayerSize = 65536;

enum class Kind { kInt, kFloat, kChoice, kBool, kSizes, kCnnLayers };

struct Hyperparam {
  const char* name;
  Kind kind;
  double min = 0;  // for kInt and kFloat
  double max = 0;
  bool max_open = false;  // the range is [min, max) rather than [min, max]
  bool min_open = false;  // (min, ...
  std::vector<std::string> choices = {};
  std::function<void(TrainConfig*, const ParamValue&)> apply = nullptr;
};

double number(const ParamValue& v) {
  double d = 0;
  as_double(v, &d);
  return d;
}

// Only called on values check_hyperparam accepted.
bool truth(const ParamValue& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return *s == "true" || *s == "True";
  return number(v) != 0;
}

const std::vector<Hyperparam>& table() {
  static const std::vector<Hyperparam> kTable = {
      {.name = "model", .kind = Kind::kChoice,
       .choices = {"linear", "logistic", "softmax", "mlp", "cnn"},
       .apply = [](TrainConfig* c, const ParamValue& v) { c->model = std::get<std::string>(v); }},
      {.name = "hidden", .kind = Kind::kSizes,
       .apply = [](TrainConfig* c, const ParamValue& v) {
         c->has_hidden = true;
         if (const auto* i = std::get_if<std::int64_t>(&v)) {
           c->hidden = {static_cast<int>(*i)};
         } else {
           (void)parse_sizes(std::get<std::string>(v), &c->hidden);
         }
       }},
      {.name = "layers", .kind = Kind::kCnnLayers,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->layers = std::get<std::string>(v); }},
      {.name = "hidden_layers", .kind = Kind::kInt, .min = 0, .max = kMaxHiddenLayers,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->hidden_layers = static_cast<int>(number(v)); }},
      {.name = "hidden_units", .kind = Kind::kInt, .min = 1, .max = kMaxLayerSize,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->hidden_units = static_cast<int>(number(v)); }},
      {.name = "activation", .kind = Kind::kChoice, .choices = {"relu", "tanh", "gelu"},
       .apply = [](TrainConfig* c, const ParamValue& v) { c->activation = std::get<std::string>(v); }},
      {.name = "dropout", .kind = Kind::kFloat, .min = 0, .max = 1, .max_open = true,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->dropout = number(v); }},
      {.name = "optimizer", .kind = Kind::kChoice, .choices = {"sgd", "adam", "adamw"},
       .apply = [](TrainConfig* c, const ParamValue& v) { c->optimizer = std::get<std::string>(v); }},
      {.name = "lr", .kind = Kind::kFloat, .min = 1e-12, .max = 100,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->lr = number(v); }},
      {.name = "momentum", .kind = Kind::kFloat, .min = 0, .max = 1, .max_open = true,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->momentum = number(v); }},
      {.name = "nesterov", .kind = Kind::kBool,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->nesterov = truth(v); }},
      {.name = "weight_decay", .kind = Kind::kFloat, .min = 0, .max = 10,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->weight_decay = number(v); }},
      {.name = "beta1", .kind = Kind::kFloat, .min = 0, .max = 1, .max_open = true,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->beta1 = number(v); }},
      {.name = "beta2", .kind = Kind::kFloat, .min = 0, .max = 1, .max_open = true,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->beta2 = number(v); }},
      {.name = "grad_clip", .kind = Kind::kFloat, .min = 0, .max = 1e6,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->grad_clip = number(v); }},
      {.name = "batch_size", .kind = Kind::kInt, .min = 1, .max = 1 << 20,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->batch_size = static_cast<int>(number(v)); }},
      {.name = "epochs", .kind = Kind::kInt, .min = 1, .max = 100000,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->epochs = static_cast<int>(number(v)); }},
      {.name = "allreduce", .kind = Kind::kChoice, .choices = {"auto", "flat", "hierarchical"},
       .apply = [](TrainConfig* c, const ParamValue& v) { c->allreduce = std::get<std::string>(v); }},
      {.name = "lr_schedule", .kind = Kind::kChoice, .choices = {"constant", "step", "cosine"},
       .apply = [](TrainConfig* c, const ParamValue& v) { c->lr_schedule = std::get<std::string>(v); }},
      {.name = "warmup_epochs", .kind = Kind::kFloat, .min = 0, .max = 100000,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->warmup_epochs = number(v); }},
      {.name = "lr_step_epochs", .kind = Kind::kInt, .min = 1, .max = 100000,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->lr_step_epochs = static_cast<int>(number(v)); }},
      {.name = "lr_gamma", .kind = Kind::kFloat, .min = 0, .max = 1, .min_open = true,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->lr_gamma = number(v); }},
      {.name = "lr_min", .kind = Kind::kFloat, .min = 0, .max = 100,
       .apply = [](TrainConfig* c, const ParamValue& v) { c->lr_min = number(v); }},
  };
  return kTable;
}

const Hyperparam* find(const std::string& name) {
  for (const auto& h : table())
    if (name == h.name) return &h;
  return nullptr;
}

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t");
  return s.substr(begin, end - begin + 1);
}

Status check_range(const Hyperparam& h, const std::string& name, const ParamValue& value) {
  double d = 0;
  if (!as_double(value, &d))
    return Status::Error("hyperparameter '" + name + "' must be a number, got '" +
                         to_string(value) + "'");
  if (h.kind == Kind::kInt && !std::holds_alternative<std::int64_t>(value))
    return Status::Error("hyperparameter '" + name + "' must be an integer, got " +
                         to_string(value));
  const bool below = h.min_open ? !(d > h.min) : !(d >= h.min);
  const bool above = h.max_open ? !(d < h.max) : !(d <= h.max);
  if (!std::isfinite(d) || below || above)
    return Status::Error("hyperparameter '" + name + "' = " + to_string(value) + " is outside " +
                         (h.min_open ? "(" : "[") + to_string(ParamValue(h.min)) + ", " +
                         to_string(ParamValue(h.max)) + (h.max_open ? ")" : "]"));
  return Status::Ok();
}

}  // namespace

std::vector<int> hidden_sizes(const TrainConfig& config) {
  if (config.model != "mlp") return {};
  if (config.has_hidden) return config.hidden;
  return std::vector<int>(static_cast<std::size_t>(std::max(config.hidden_layers, 0)),
                          config.hidden_units);
}

const std::vector<std::string>& hyperparam_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const auto& h : table()) names.emplace_back(h.name);
    return names;
  }();
  return kNames;
}

Status parse_sizes(const std::string& text, std::vector<int>* out) {
  std::vector<int> sizes;
  if (!trim(text).empty()) {
    std::size_t at = 0;
    while (true) {
      const std::size_t comma = text.find(',', at);
      const std::string item =
          trim(text.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
      int v = 0;
      const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
      if (item.empty() || ec != std::errc() || end != item.data() + item.size())
        return Status::Error("'" + item + "' in '" + text +
                             "' is not a layer size (expected positive integers like 256,128)");
      if (v < 1 || v > kMaxLayerSize)
        return Status::Error("layer size " + item + " in '" + text + "' is outside [1, " +
                             std::to_string(kMaxLayerSize) + "]");
      sizes.push_back(v);
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
  }
  if (sizes.size() > static_cast<std::size_t>(kMaxHiddenLayers))
    return Status::Error("'" + text + "' has " + std::to_string(sizes.size()) +
                         " layers; at most " + std::to_string(kMaxHiddenLayers));
  if (out != nullptr) *out = std::move(sizes);
  return Status::Ok();
}

Status check_hyperparam(const std::string& name, const ParamValue& value) {
  const Hyperparam* h = find(name);
  if (h == nullptr) return Status::Error("unknown hyperparameter '" + name + "'");
  switch (h->kind) {
    case Kind::kChoice: {
      const auto* s = std::get_if<std::string>(&value);
      if (s == nullptr)
        return Status::Error("hyperparameter '" + name + "' must be a string, got " +
                             to_string(value));
      for (const auto& c : h->choices)
        if (c == *s) return Status::Ok();
      std::string allowed;
      for (const auto& c : h->choices) allowed += (allowed.empty() ? "" : ", ") + c;
      return Status::Error("hyperparameter '" + name + "' must be one of " + allowed + ", got '" +
                           *s + "'");
    }
    case Kind::kBool: {
      if (const auto* i = std::get_if<std::int64_t>(&value); i != nullptr && (*i == 0 || *i == 1))
        return Status::Ok();
      if (const auto* s = std::get_if<std::string>(&value);
          s != nullptr && (*s == "true" || *s == "false" || *s == "True" || *s == "False"))
        return Status::Ok();
      return Status::Error("hyperparameter '" + name + "' must be true, false, 0 or 1, got '" +
                           to_string(value) + "'");
    }
    case Kind::kSizes: {
      // A bare integer is one layer (`hidden: 256` in YAML).
      if (const auto* i = std::get_if<std::int64_t>(&value))
        return parse_sizes(std::to_string(*i), nullptr).With("hyperparameter '" + name + "'");
      const auto* s = std::get_if<std::string>(&value);
      if (s == nullptr)
        return Status::Error("hyperparameter '" + name +
                             "' must be a list of layer sizes like \"256,128\", got " +
                             to_string(value));
      return parse_sizes(*s, nullptr).With("hyperparameter '" + name + "'");
    }
    case Kind::kCnnLayers: {
      const auto* s = std::get_if<std::string>(&value);
      if (s == nullptr)
        return Status::Error("hyperparameter '" + name +
                             "' must be a list of layers like [conv 32 3x3, relu, pool 2], got " +
                             to_string(value));
      return parse_cnn_layers(*s, nullptr).With("hyperparameter '" + name + "'");
    }
    case Kind::kInt:
    case Kind::kFloat:
      return check_range(*h, name, value);
  }
  return Status::Ok();
}

Status train_config_from_params(const ParamMap& params, TrainConfig* out) {
  TrainConfig config;
  for (const auto& [name, value] : params) {
    Status s = check_hyperparam(name, value);
    if (!s.ok()) return s;
    find(name)->apply(&config, value);
  }
  // Cosine would climb from lr to lr_min; refuse rather than guess which one was meant.
  if (config.lr_schedule == "cosine" && config.lr_min > config.lr)
    return Status::Error("lr_min (" + to_string(ParamValue(config.lr_min)) +
                         ") must not exceed lr (" + to_string(ParamValue(config.lr)) + ")");
  *out = config;
  return Status::Ok();
}

bool defines_trained_state(const std::string& name) {
  static const std::set<std::string> kNames = {"model",      "hidden",    "hidden_layers", "layers",
                                               "hidden_units", "activation", "optimizer",
                                               "epochs"};
  return kNames.count(name) > 0;
}

}  // namespace trellis
