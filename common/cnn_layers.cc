#include "common/cnn_layers.h"

#include <charconv>
#include <sstream>

namespace trellis {
namespace {

bool parse_int(const std::string& s, int lo, int hi, int* out) {
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

// "3x3" or "3": a square kernel side.
bool parse_kernel(const std::string& s, int* out) {
  const std::size_t x = s.find('x');
  if (x == std::string::npos) return parse_int(s, 1, kMaxCnnKernel, out);
  int a = 0, b = 0;
  if (!parse_int(s.substr(0, x), 1, kMaxCnnKernel, &a) ||
      !parse_int(s.substr(x + 1), 1, kMaxCnnKernel, &b) || a != b)
    return false;
  *out = a;
  return true;
}

Status parse_one(const std::vector<std::string>& w, CnnLayerSpec* layer, bool* skip) {
  *skip = false;
  const std::string& op = w[0];
  if (op == "relu" || op == "flatten") {
    if (w.size() != 1) return Status::Error("'" + op + "' takes no arguments");
    layer->kind = CnnLayerKind::kRelu;
    *skip = op == "flatten";
    return Status::Ok();
  }
  if (op == "conv") {
    layer->kind = CnnLayerKind::kConv;
    if (w.size() != 3 || !parse_int(w[1], 1, kMaxCnnChannels, &layer->size) ||
        !parse_kernel(w[2], &layer->kernel))
      return Status::Error("expected 'conv CHANNELS KxK' with CHANNELS in [1, " +
                           std::to_string(kMaxCnnChannels) + "] and a square kernel of side in [1, " +
                           std::to_string(kMaxCnnKernel) + "]");
    return Status::Ok();
  }
  if (op == "pool" || op == "maxpool" || op == "avgpool") {
    layer->kind = op == "avgpool" ? CnnLayerKind::kAvgPool : CnnLayerKind::kMaxPool;
    if (w.size() != 2 || !parse_int(w[1], 1, kMaxCnnKernel, &layer->kernel))
      return Status::Error("expected '" + op + " SIZE' with SIZE in [1, " +
                           std::to_string(kMaxCnnKernel) + "]");
    return Status::Ok();
  }
  if (op == "dense") {
    layer->kind = CnnLayerKind::kDense;
    if (w.size() != 2 || !parse_int(w[1], 1, 1 << 20, &layer->size))
      return Status::Error("expected 'dense UNITS' with UNITS a positive integer");
    return Status::Ok();
  }
  return Status::Error("unknown layer '" + op + "' (conv, relu, pool, maxpool, avgpool, flatten, dense)");
}

}  // namespace

Status parse_cnn_layers(const std::string& text, std::vector<CnnLayerSpec>* out) {
  std::vector<CnnLayerSpec> layers;
  std::size_t at = 0;
  int index = 0;
  while (true) {
    const std::size_t comma = text.find(',', at);
    std::string item = text.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    ++index;
    std::istringstream words(item);
    std::vector<std::string> w;
    for (std::string s; words >> s;) w.push_back(s);
    if (w.empty())
      return Status::Error("layer " + std::to_string(index) + " of '" + text + "' is empty");
    CnnLayerSpec layer;
    bool skip = false;
    if (Status s = parse_one(w, &layer, &skip); !s.ok())
      return Status::Error("layer " + std::to_string(index) + " '" + item + "' of '" + text +
                           "': " + s.message());
    if (!skip) layers.push_back(layer);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  if (layers.size() > static_cast<std::size_t>(kMaxCnnLayers))
    return Status::Error("'" + text + "' has more than " + std::to_string(kMaxCnnLayers) +
                         " layers");
  if (out != nullptr) *out = std::move(layers);
  return Status::Ok();
}

}  // namespace trellis
