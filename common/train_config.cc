#include "common/train_config.h"

#include <cmath>
#include <functional>

namespace trellis {
namespace {

enum class Kind { kInt, kFloat, kChoice };

struct Hyperparam {
  const char* name;
  Kind kind;
  double min;  // inclusive, for kInt and kFloat
  double max;  // inclusive
  std::vector<std::string> choices;
  std::function<void(TrainConfig*, const ParamValue&)> apply;
};

double number(const ParamValue& v) {
  double d = 0;
  as_double(v, &d);
  return d;
}

const std::vector<Hyperparam>& table() {
  static const std::vector<Hyperparam> kTable = {
      {"model", Kind::kChoice, 0, 0, {"mlp"},
       [](TrainConfig* c, const ParamValue& v) { c->model = std::get<std::string>(v); }},
      {"hidden_layers", Kind::kInt, 0, 16, {},
       [](TrainConfig* c, const ParamValue& v) { c->hidden_layers = static_cast<int>(number(v)); }},
      {"hidden_units", Kind::kInt, 1, 65536, {},
       [](TrainConfig* c, const ParamValue& v) { c->hidden_units = static_cast<int>(number(v)); }},
      {"activation", Kind::kChoice, 0, 0, {"relu", "tanh"},
       [](TrainConfig* c, const ParamValue& v) { c->activation = std::get<std::string>(v); }},
      {"optimizer", Kind::kChoice, 0, 0, {"adam", "sgd"},
       [](TrainConfig* c, const ParamValue& v) { c->optimizer = std::get<std::string>(v); }},
      {"lr", Kind::kFloat, 1e-12, 100, {},
       [](TrainConfig* c, const ParamValue& v) { c->lr = number(v); }},
      {"momentum", Kind::kFloat, 0, 0.999999, {},
       [](TrainConfig* c, const ParamValue& v) { c->momentum = number(v); }},
      {"weight_decay", Kind::kFloat, 0, 10, {},
       [](TrainConfig* c, const ParamValue& v) { c->weight_decay = number(v); }},
      {"batch_size", Kind::kInt, 1, 1 << 20, {},
       [](TrainConfig* c, const ParamValue& v) { c->batch_size = static_cast<int>(number(v)); }},
      {"epochs", Kind::kInt, 1, 100000, {},
       [](TrainConfig* c, const ParamValue& v) { c->epochs = static_cast<int>(number(v)); }},
  };
  return kTable;
}

const Hyperparam* find(const std::string& name) {
  for (const auto& h : table())
    if (name == h.name) return &h;
  return nullptr;
}

}  // namespace

const std::vector<std::string>& hyperparam_names() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> names;
    for (const auto& h : table()) names.emplace_back(h.name);
    return names;
  }();
  return kNames;
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
    case Kind::kInt:
    case Kind::kFloat: {
      double d = 0;
      if (!as_double(value, &d))
        return Status::Error("hyperparameter '" + name + "' must be a number, got '" +
                             to_string(value) + "'");
      if (h->kind == Kind::kInt && !std::holds_alternative<std::int64_t>(value))
        return Status::Error("hyperparameter '" + name + "' must be an integer, got " +
                             to_string(value));
      if (!std::isfinite(d) || d < h->min || d > h->max)
        return Status::Error("hyperparameter '" + name + "' = " + to_string(value) +
                             " is outside [" + to_string(ParamValue(h->min)) + ", " +
                             to_string(ParamValue(h->max)) + "]");
      return Status::Ok();
    }
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
  *out = config;
  return Status::Ok();
}

}  // namespace trellis
