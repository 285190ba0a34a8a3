#pragma once
// TrainConfig: the hyperparameters of one trial, as the trainer consumes them.
//
// A sweep spec fixes some of them (`train:`) and searches others (`search.space:`); both end
// up as one ParamMap per trial. Every name is checked here, on both sides of the wire: the
// coordinator refuses a spec that names an unknown or ill-typed hyperparameter before any
// trial starts, and the worker refuses an Assign that would not train.
//
// Value kinds (ParamValue is int64 | double | string):
//   int      an int64 inside the range.
//   float    an int64 or a double inside the range.
//   choice   one of the listed strings.
//   bool     int 0/1 or the strings true/false (YAML `true` arrives as the string "true").
//   sizes    a string of comma-separated positive ints, "256,128" (the spec layer turns a YAML
//            list [256, 128] into it; "" is the empty list). Spaces around numbers are allowed;
//            a bare int is one layer.

#include <string>
#include <vector>

#include "common/param_value.h"
#include "common/status.h"

namespace trellis {

struct TrainConfig {
  // Model.
  //   linear    regression, 1 output, squared error against a float target.
  //   logistic  binary, 1 output, sigmoid + binary cross-entropy, target 0/1.
  //   softmax   softmax regression (no hidden layer), softmax cross-entropy.
  //   mlp       hidden layers (see hidden_sizes()), softmax cross-entropy.
  //   cnn       convolutional network over square single-channel images, its layers in
  //             `layers` (common/cnn_layers.h), softmax cross-entropy.
  // Only mlp has hidden layers; the others ignore the hidden settings, so one sweep can search
  // `model` and `hidden` together.
  std::string model = "mlp";
  // Hidden sizes "256,128"; when set (even to "") it wins over hidden_layers x hidden_units.
  bool has_hidden = false;
  std::vector<int> hidden;
  int hidden_layers = 2;  // 0 = softmax regression
  int hidden_units = 128;
  std::string activation = "relu";  // relu | tanh | gelu (tanh approximation)
  double dropout = 0.0;             // [0, 1), inverted dropout on hidden activations
  // cnn only: the layer list, "conv 32 3x3, relu, pool 2, ..." (see common/cnn_layers.h).
  std::string layers = "conv 32 3x3, relu, pool 2, conv 64 3x3, relu, pool 2, dense 128, relu";

  // Optimisation.
  std::string optimizer = "adam";  // sgd | adam | adamw
  double lr = 1e-3;
  double momentum = 0.0;      // sgd only
  bool nesterov = false;      // sgd only
  double weight_decay = 0.0;  // sgd/adam: L2 added to the gradient; adamw: decoupled
  double beta1 = 0.9;         // adam, adamw
  double beta2 = 0.999;
  double grad_clip = 0.0;  // max global L2 norm of the gradient; 0 = off
  int batch_size = 128;    // global batch, split across the ranks of a group
  int epochs = 5;
  // Gradient all-reduce: auto (hierarchical across nodes with several ranks each, else flat),
  // flat or hierarchical; see worker/collectives.h.
  std::string allreduce = "auto";

  // Learning-rate schedule (see worker/lr_schedule.h).
  std::string lr_schedule = "constant";  // constant | step | cosine
  double warmup_epochs = 0.0;            // linear warmup, may be fractional
  int lr_step_epochs = 10;               // step: multiply by lr_gamma every this many epochs
  double lr_gamma = 0.1;
  double lr_min = 0.0;  // cosine: the lr at the end of the run
};

// The hidden layer sizes the config asks for: `hidden` when set, else hidden_layers copies of
// hidden_units; always empty for a model other than mlp.
std::vector<int> hidden_sizes(const TrainConfig& config);

// Checks one hyperparameter: a known name, a value of the right kind, inside its range.
Status check_hyperparam(const std::string& name, const ParamValue& value);

// Names of every hyperparameter TrainConfig understands (for did-you-mean and --help).
const std::vector<std::string>& hyperparam_names();

// Hyperparameters that define what trained weights mean (the model, its layers, activation)
// or how the optimizer state is laid out, and the trial length. PBT copies them from the donor
// together with its weights instead of exploring them.
bool defines_trained_state(const std::string& name);

// Parses a "sizes" value ("256,128") into positive ints (`out` may be null to only check); the
// error names the bad item.
Status parse_sizes(const std::string& text, std::vector<int>* out);

// Builds the config from defaults overridden by `params`; fails on the first bad entry, or on
// a combination no trial could train (lr_min above lr).
Status train_config_from_params(const ParamMap& params, TrainConfig* out);

}  // namespace trellis
