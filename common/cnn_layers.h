#pragma once
// The layer list of `model: cnn` (the `layers` hyperparameter), parsed on both sides of the
// wire so the coordinator refuses a bad list before any trial starts.
//
// Text form, layers separated by commas (a YAML list [conv 32 3x3, relu, pool 2] arrives
// joined so):
//   conv C KxK   C output channels, K x K kernel, stride 1, zero padding K/2 ("same" for odd K);
//                "conv C K" is the same as "conv C KxK"
//   relu         max(0, x)
//   pool S       max pooling, S x S windows, stride S (a trailing partial window is dropped);
//   maxpool S    the same; avgpool S: the mean of the window
//   flatten      optional marker: a dense layer flattens its input anyway
//   dense N      N units, fully connected
// The softmax output layer over the classes follows the last layer by itself.

#include <string>
#include <vector>

#include "common/status.h"

namespace trellis {

enum class CnnLayerKind { kConv, kRelu, kMaxPool, kAvgPool, kDense };

struct CnnLayerSpec {
  CnnLayerKind kind = CnnLayerKind::kRelu;
  int size = 0;    // conv: output channels; dense: units
  int kernel = 0;  // conv: kernel side; pools: window side
};

inline constexpr int kMaxCnnLayers = 64;
inline constexpr int kMaxCnnChannels = 4096;
inline constexpr int kMaxCnnKernel = 15;

// Parses `text`; `out` may be null to only check. The error names the bad layer by position
// and text.
[[nodiscard]] Status parse_cnn_layers(const std::string& text, std::vector<CnnLayerSpec>* out);

}  // namespace trellis
