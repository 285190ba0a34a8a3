#pragma once
// TrainConfig: the hyperparameters of one trial, as the trainer consumes them.
//
// A sweep spec fixes some of them (`train:`) and searches others (`search.space:`); both end
// up as one ParamMap per trial. Every name is checked here, on both sides of the wire: the
// coordinator refuses a spec that names an unknown or ill-typed hyperparameter before any
// trial starts, and the worker refuses an Assign that would not train.

#include <string>
#include <vector>

#include "common/param_value.h"
#include "common/status.h"

namespace trellis {

struct TrainConfig {
  // Model: an MLP of `hidden_layers` layers of `hidden_units` each (0 layers = softmax
  // regression), softmax cross-entropy on top.
  std::string model = "mlp";
  int hidden_layers = 2;
  int hidden_units = 128;
  std::string activation = "relu";  // relu | tanh

  // Optimisation.
  std::string optimizer = "adam";  // adam | sgd
  double lr = 1e-3;
  double momentum = 0.0;      // sgd only
  double weight_decay = 0.0;  // L2, added to the gradient
  int batch_size = 128;       // global batch, split across the ranks of a group
  int epochs = 5;
};

// Checks one hyperparameter: a known name, a value of the right kind, inside its range.
Status check_hyperparam(const std::string& name, const ParamValue& value);

// Names of every hyperparameter TrainConfig understands (for did-you-mean and --help).
const std::vector<std::string>& hyperparam_names();

// Builds the config from defaults overridden by `params`; fails on the first bad entry.
Status train_config_from_params(const ParamMap& params, TrainConfig* out);

}  // namespace trellis
