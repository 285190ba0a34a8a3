#include "worker/models/cnn.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <limits>
#include <string>

#include "worker/kernels/elementwise.h"
#include "worker/kernels/gemm.h"
#include "worker/models/normal_source.h"

namespace trellis::worker {
namespace {

using kernels::gemm;

std::string dims(int c, int h, int w) {
  return std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
}

std::string layer_text(const CnnLayerSpec& s) {
  switch (s.kind) {
    case CnnLayerKind::kConv:
      return "conv " + std::to_string(s.size) + " " + std::to_string(s.kernel) + "x" +
             std::to_string(s.kernel);
    case CnnLayerKind::kRelu: return "relu";
    case CnnLayerKind::kMaxPool: return "pool " + std::to_string(s.kernel);
    case CnnLayerKind::kAvgPool: return "avgpool " + std::to_string(s.kernel);
    case CnnLayerKind::kDense: return "dense " + std::to_string(s.size);
  }
  return "?";
}

}  // namespace

Status cnn_shape_from_config(const TrainConfig& config, int inputs, int classes, int image_side,
                             CnnShape* out) {
  if (config.model != "cnn") return Status::Error("not a cnn: model '" + config.model + "'");
  if (classes < 2)
    return Status::Error("model cnn needs >= 2 classes, the data has " + std::to_string(classes));
  if (config.dropout != 0)
    return Status::Error("model cnn has no dropout; remove dropout: " +
                         std::to_string(config.dropout));
  CnnShape shape;
  if (image_side == 0) {
    image_side = static_cast<int>(std::lround(std::sqrt(static_cast<double>(inputs))));
    if (inputs < 1 || image_side * image_side != inputs)
      return Status::Error("model cnn needs square single-channel images; the data has " +
                           std::to_string(inputs) + " features, not a square number");
  } else if (image_side * image_side != inputs) {
    return Status::Error("image side " + std::to_string(image_side) + " does not match " +
                         std::to_string(inputs) + " features");
  }
  shape.height = shape.width = image_side;
  shape.classes = classes;
  if (Status s = parse_cnn_layers(config.layers, &shape.layers); !s.ok())
    return s.With("layers");
  // Walk the shapes so a layer that cannot take its input is named here, not at run time.
  int c = shape.channels, h = shape.height, w = shape.width;
  bool flat = false;
  for (std::size_t i = 0; i < shape.layers.size(); ++i) {
    const CnnLayerSpec& s = shape.layers[i];
    const std::string where =
        "layers: layer " + std::to_string(i + 1) + " '" + layer_text(s) + "' ";
    switch (s.kind) {
      case CnnLayerKind::kConv:
        if (flat) return Status::Error(where + "comes after a dense layer; convolutions need an image");
        // Padding K/2 keeps an odd kernel's output the input's size and grows an even one's by
        // one, so any kernel fits any image.
        h = h + 2 * (s.kernel / 2) - s.kernel + 1;
        w = w + 2 * (s.kernel / 2) - s.kernel + 1;
        c = s.size;
        break;
      case CnnLayerKind::kMaxPool:
      case CnnLayerKind::kAvgPool:
        if (flat) return Status::Error(where + "comes after a dense layer; pooling needs an image");
        if (s.kernel > h || s.kernel > w)
          return Status::Error(where + "has a window larger than its " + dims(c, h, w) + " input");
        h /= s.kernel;
        w /= s.kernel;
        break;
      case CnnLayerKind::kRelu:
        if (i == 0) return Status::Error(where + "must follow a layer (it is fused into it)");
        break;
      case CnnLayerKind::kDense:
        c = s.size;
        h = w = 1;
        flat = true;
        break;
    }
  }
  *out = shape;
  return Status::Ok();
}

Cnn::Cnn(const CnnShape& shape, int max_batch, int grad_tail)
    : shape_(shape), max_batch_(max_batch), grad_tail_(grad_tail) {
  assert(max_batch >= 1 && grad_tail >= 0 && shape.classes >= 2);
  int c = shape.channels, h = shape.height, w = shape.width;
  int widest = c * h * w, widest_p = 0, widest_k = 0;
  auto add = [&](Layer y) {
    if (y.kind == CnnLayerKind::kConv || y.kind == CnnLayerKind::kDense) {
      const std::int64_t fan_in =
          y.kind == CnnLayerKind::kConv ? static_cast<std::int64_t>(y.cin) * y.k * y.k : y.in_size();
      y.w_offset = num_params_;
      y.b_offset = num_params_ + fan_in * y.cout;
      num_params_ = y.b_offset + y.cout;
    }
    if (y.kind == CnnLayerKind::kConv) {
      widest_p = std::max(widest_p, y.hout * y.wout);
      widest_k = std::max(widest_k, y.cin * y.k * y.k);
    }
    widest = std::max(widest, y.out_size());
    c = y.cout, h = y.hout, w = y.wout;
    layers_.push_back(y);
  };
  for (const CnnLayerSpec& s : shape.layers) {
    Layer y;
    y.kind = s.kind;
    y.cin = c, y.hin = h, y.win = w;
    switch (s.kind) {
      case CnnLayerKind::kRelu:
        layers_.back().relu = true;
        continue;
      case CnnLayerKind::kConv:
        y.k = s.kernel;
        y.pad = s.kernel / 2;
        y.cout = s.size;
        y.hout = h + 2 * y.pad - y.k + 1;
        y.wout = w + 2 * y.pad - y.k + 1;
        break;
      case CnnLayerKind::kMaxPool:
      case CnnLayerKind::kAvgPool:
        y.k = s.kernel;
        y.cout = c, y.hout = h / s.kernel, y.wout = w / s.kernel;
        break;
      case CnnLayerKind::kDense:
        y.cin = c * h * w, y.hin = y.win = 1;
        y.cout = s.size, y.hout = y.wout = 1;
        break;
    }
    add(y);
  }
  Layer head;
  head.kind = CnnLayerKind::kDense;
  head.cin = c * h * w, head.hin = head.win = 1;
  head.cout = shape.classes, head.hout = head.wout = 1;
  add(head);
  for (const Layer& y : layers_) {
    acts_.emplace_back(y.out_size(), max_batch);
    argmax_.emplace_back();
    if (y.kind == CnnLayerKind::kMaxPool) argmax_.back().resize(y.out_size(), max_batch);
  }
  for (auto& d : delta_) d.resize(widest, max_batch);
  p_.resize(std::max(1, widest_p), std::max(1, widest_k));
  dp_.resize(p_.rows(), p_.cols());
  params_ = Eigen::VectorXf::Zero(num_params_);
  grads_ = Eigen::VectorXf::Zero(num_params_ + grad_tail);
}

void Cnn::init(std::uint64_t seed) {
  NormalSource normal(seed);
  params_.setZero();
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const Layer& y = layers_[l];
    if (y.kind != CnnLayerKind::kConv && y.kind != CnnLayerKind::kDense) continue;
    const std::int64_t fan_in = y.b_offset - y.w_offset;
    const std::int64_t fan_in_per_unit = fan_in / y.cout;
    const bool output = l + 1 == layers_.size();
    const double stddev = output ? std::sqrt(2.0 / static_cast<double>(fan_in_per_unit + y.cout))
                                 : std::sqrt(2.0 / static_cast<double>(fan_in_per_unit));
    for (std::int64_t i = y.w_offset; i < y.b_offset; ++i)
      params_[i] = static_cast<float>(stddev * normal.next());
  }
}

const float* Cnn::input(const Eigen::Ref<const Eigen::MatrixXf>& x, int l, int j) const {
  if (l == 0) return x.data() + static_cast<std::ptrdiff_t>(j) * x.outerStride();
  const Eigen::MatrixXf& a = acts_[static_cast<std::size_t>(l - 1)];
  return a.data() + static_cast<std::ptrdiff_t>(j) * a.rows();
}

void Cnn::im2col(const Layer& y, const float* in) {
  const int hw = y.hout * y.wout;
  float* p = p_.data();
  const auto ldp = p_.rows();
  for (int ci = 0; ci < y.cin; ++ci)
    for (int dy = 0; dy < y.k; ++dy)
      for (int dx = 0; dx < y.k; ++dx) {
        float* col = p + static_cast<std::ptrdiff_t>((ci * y.k + dy) * y.k + dx) * ldp;
        const float* plane = in + static_cast<std::ptrdiff_t>(ci) * y.hin * y.win;
        for (int oy = 0; oy < y.hout; ++oy) {
          const int iy = oy + dy - y.pad;
          float* row = col + oy * y.wout;
          if (iy < 0 || iy >= y.hin) {
            std::fill(row, row + y.wout, 0.0f);
            continue;
          }
          const float* src = plane + iy * y.win;
          // Output columns whose input column ox + dx - pad lies inside [0, win).
          const int lo = std::clamp(y.pad - dx, 0, y.wout), hi = std::clamp(y.win + y.pad - dx, lo, y.wout);
          std::fill(row, row + lo, 0.0f);
          for (int ox = lo; ox < hi; ++ox) row[ox] = src[ox + dx - y.pad];
          std::fill(row + hi, row + y.wout, 0.0f);
        }
      }
  (void)hw;
}

void Cnn::col2im(const Layer& y, float* din) const {
  const float* p = dp_.data();
  const auto ldp = dp_.rows();
  for (int ci = 0; ci < y.cin; ++ci)
    for (int dy = 0; dy < y.k; ++dy)
      for (int dx = 0; dx < y.k; ++dx) {
        const float* col = p + static_cast<std::ptrdiff_t>((ci * y.k + dy) * y.k + dx) * ldp;
        float* plane = din + static_cast<std::ptrdiff_t>(ci) * y.hin * y.win;
        for (int oy = 0; oy < y.hout; ++oy) {
          const int iy = oy + dy - y.pad;
          if (iy < 0 || iy >= y.hin) continue;
          const float* row = col + oy * y.wout;
          float* dst = plane + iy * y.win;
          const int lo = std::clamp(y.pad - dx, 0, y.wout), hi = std::clamp(y.win + y.pad - dx, lo, y.wout);
          for (int ox = lo; ox < hi; ++ox) dst[ox + dx - y.pad] += row[ox];
        }
      }
}

void Cnn::conv_forward(const Layer& y, const float* in, float* out) {
  const int hw = y.hout * y.wout, kk = y.cin * y.k * y.k;
  im2col(y, in);
  // out (pixels x Cout, i.e. channel-major) = P (pixels x K) W^T.
  gemm(false, true, hw, y.cout, kk, p_.data(), static_cast<int>(p_.rows()),
       params_.data() + y.w_offset, y.cout, 0.0f, out, hw);
  for (int co = 0; co < y.cout; ++co) {
    Eigen::Map<Eigen::ArrayXf> plane(out + static_cast<std::ptrdiff_t>(co) * hw, hw);
    plane += params_[y.b_offset + co];
  }
}

namespace {

// 2x2 max pooling, the common case, unrolled: the same comparisons in the same order as the
// general loop below (strictly greater, from -inf, so the first maximum wins), without its
// index arithmetic per input.
void max_pool_2x2(int channels, int hin, int win, int hout, int wout, const float* in,
                  float* out, std::int32_t* arg) {
  int o = 0;
  for (int c = 0; c < channels; ++c) {
    const int plane = c * hin * win;
    for (int oy = 0; oy < hout; ++oy) {
      const int top = plane + 2 * oy * win, bottom = top + win;
      for (int ox = 0; ox < wout; ++ox, ++o) {
        const int at[4] = {top + 2 * ox, top + 2 * ox + 1, bottom + 2 * ox, bottom + 2 * ox + 1};
        float best = -std::numeric_limits<float>::infinity();
        int best_at = 0;
        for (const int i : at) {
          const float v = in[i];
          best_at = v > best ? i : best_at;
          best = v > best ? v : best;
        }
        out[o] = best;
        arg[o] = best_at;
      }
    }
  }
}

}  // namespace

void Cnn::pool_forward(int l, const Layer& y, const float* in, float* out, int j) {
  const bool max = y.kind == CnnLayerKind::kMaxPool;
  std::int32_t* arg = max ? argmax_[static_cast<std::size_t>(l)].col(j).data() : nullptr;
  if (max && y.k == 2) return max_pool_2x2(y.cout, y.hin, y.win, y.hout, y.wout, in, out, arg);
  const float inv = 1.0f / static_cast<float>(y.k * y.k);
  int o = 0;
  for (int c = 0; c < y.cout; ++c) {
    const int plane = c * y.hin * y.win;
    for (int oy = 0; oy < y.hout; ++oy)
      for (int ox = 0; ox < y.wout; ++ox, ++o) {
        float best = -std::numeric_limits<float>::infinity(), sum = 0;
        int best_at = 0;
        for (int dy = 0; dy < y.k; ++dy)
          for (int dx = 0; dx < y.k; ++dx) {
            const int at = plane + (oy * y.k + dy) * y.win + ox * y.k + dx;
            const float v = in[at];
            sum += v;
            // Strictly greater: the first maximum wins, the same on every run.
            if (v > best) best = v, best_at = at;
          }
        if (max) {
          out[o] = best;
          arg[o] = best_at;
        } else {
          out[o] = sum * inv;
        }
      }
  }
}

void Cnn::forward(const Eigen::Ref<const Eigen::MatrixXf>& x, int n) {
  assert(n <= max_batch_ && x.rows() == inputs());
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const Layer& y = layers_[l];
    const int li = static_cast<int>(l);
    auto a = acts_[l].leftCols(n);
    if (y.kind == CnnLayerKind::kDense) {
      const int ld_in = l == 0 ? static_cast<int>(std::max<Eigen::Index>(1, x.outerStride()))
                               : static_cast<int>(acts_[l - 1].rows());
      gemm(false, false, y.cout, n, y.cin, params_.data() + y.w_offset, y.cout, input(x, li, 0),
           ld_in, 0.0f, a.data(), y.cout);
      const auto b = params_.segment(y.b_offset, y.cout);
      for (int j = 0; j < n; ++j) a.col(j) += b;
    } else {
      for (int j = 0; j < n; ++j) {
        float* out = a.col(j).data();
        if (y.kind == CnnLayerKind::kConv) {
          conv_forward(y, input(x, li, j), out);
        } else {
          pool_forward(li, y, input(x, li, j), out, j);
        }
      }
    }
    if (y.relu) kernels::relu(a.data(), static_cast<int>(acts_[l].rows()), y.out_size(), n);
  }
}

double Cnn::head(int n, const Targets& targets, bool grad, float grad_scale,
                 std::int64_t* correct) {
  assert(targets.labels.size() == static_cast<std::size_t>(n));
  const auto z = acts_.back().leftCols(n);
  const int k = shape_.classes;
  double loss_sum = 0;
  std::int64_t right = 0;
  for (int j = 0; j < n; ++j) {
    const int y = targets.labels[static_cast<std::size_t>(j)];
    assert(y >= 0 && y < k);
    Eigen::Index argmax = 0;
    const float m = z.col(j).maxCoeff(&argmax);
    if (argmax == y) ++right;
    const auto e = (z.col(j).array() - m).exp();
    const float sum = e.sum();
    loss_sum += static_cast<double>(std::log(sum) + m - z(y, j));
    if (grad) {
      auto d = delta_[0].col(j).head(k);
      d = (grad_scale / sum) * e.matrix();
      d(y) -= grad_scale;
    }
  }
  if (correct != nullptr) *correct = right;
  return loss_sum;
}

double Cnn::forward_backward(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets,
                             const BatchKey& /*key*/, float scale, GradMode mode,
                             const GradReady& on_grad_ready) {
  const int n = static_cast<int>(x.cols());
  forward(x, n);
  const double loss_sum = head(n, targets, /*grad=*/true, scale, nullptr);
  // kAssign: one zeroing pass, then every layer accumulates (convolutions sum per sample).
  if (mode == GradMode::kAssign) grads().setZero();
  int cur = 0;  // delta_[cur] holds d(loss)/d(output of layer l)
  for (int l = static_cast<int>(layers_.size()) - 1; l >= 0; --l) {
    const Layer& y = layers_[static_cast<std::size_t>(l)];
    auto d = delta_[cur].topLeftCorner(y.out_size(), n);
    if (y.relu) {
      const Eigen::MatrixXf& a = acts_[static_cast<std::size_t>(l)];
      kernels::relu_mask(d.data(), static_cast<int>(delta_[cur].rows()), a.data(),
                         static_cast<int>(a.rows()), y.out_size(), n);
    }
    const bool need_input_grad = l > 0;
    auto din = delta_[1 - cur].topLeftCorner(y.in_size(), n);
    switch (y.kind) {
      case CnnLayerKind::kDense: {
        const int ld_in = l == 0 ? static_cast<int>(std::max<Eigen::Index>(1, x.outerStride()))
                                 : static_cast<int>(acts_[static_cast<std::size_t>(l - 1)].rows());
        gemm(false, true, y.cout, y.cin, n, d.data(), static_cast<int>(delta_[cur].rows()),
             input(x, l, 0), ld_in, 1.0f, grads_.data() + y.w_offset, y.cout);
        grads_.segment(y.b_offset, y.cout) += d.rowwise().sum();
        if (need_input_grad)
          gemm(true, false, y.cin, n, y.cout, params_.data() + y.w_offset, y.cout, d.data(),
               static_cast<int>(delta_[cur].rows()), 0.0f, din.data(),
               static_cast<int>(delta_[1 - cur].rows()));
        break;
      }
      case CnnLayerKind::kConv: {
        const int hw = y.hout * y.wout, kk = y.cin * y.k * y.k;
        for (int j = 0; j < n; ++j) {
          const float* dout = d.col(j).data();
          im2col(y, input(x, l, j));
          // dW (Cout x K) += dOut^T (Cout x pixels) P (pixels x K).
          gemm(true, false, y.cout, kk, hw, dout, hw, p_.data(), static_cast<int>(p_.rows()),
               1.0f, grads_.data() + y.w_offset, y.cout);
          for (int co = 0; co < y.cout; ++co)
            grads_[y.b_offset + co] +=
                Eigen::Map<const Eigen::VectorXf>(dout + static_cast<std::ptrdiff_t>(co) * hw, hw).sum();
          if (!need_input_grad) continue;
          // dP (pixels x K) = dOut (pixels x Cout) W (Cout x K), then back onto the image.
          gemm(false, false, hw, kk, y.cout, dout, hw, params_.data() + y.w_offset, y.cout, 0.0f,
               dp_.data(), static_cast<int>(dp_.rows()));
          auto dj = din.col(j);
          dj.setZero();
          col2im(y, dj.data());
        }
        break;
      }
      case CnnLayerKind::kMaxPool:
        din.setZero();
        for (int j = 0; j < n; ++j) {
          const auto arg = argmax_[static_cast<std::size_t>(l)].col(j);
          auto dj = din.col(j);
          const auto dout = d.col(j);
          for (int o = 0; o < y.out_size(); ++o) dj[arg[o]] += dout[o];
        }
        break;
      case CnnLayerKind::kAvgPool: {
        din.setZero();
        const float inv = 1.0f / static_cast<float>(y.k * y.k);
        for (int j = 0; j < n; ++j) {
          auto dj = din.col(j);
          const auto dout = d.col(j);
          int o = 0;
          for (int c = 0; c < y.cout; ++c)
            for (int oy = 0; oy < y.hout; ++oy)
              for (int ox = 0; ox < y.wout; ++ox, ++o)
                for (int dy = 0; dy < y.k; ++dy)
                  for (int dx = 0; dx < y.k; ++dx)
                    dj[c * y.hin * y.win + (oy * y.k + dy) * y.win + ox * y.k + dx] += dout[o] * inv;
        }
        break;
      }
      case CnnLayerKind::kRelu:
        break;  // folded into the layer before it
    }
    cur = 1 - cur;
  }
  if (on_grad_ready) on_grad_ready(0);
  return loss_sum;
}

EvalSums Cnn::evaluate(const Eigen::Ref<const Eigen::MatrixXf>& x, Targets targets) {
  const int n = static_cast<int>(x.cols());
  forward(x, n);
  EvalSums sums;
  sums.loss_sum = head(n, targets, /*grad=*/false, 0.0f, &sums.correct);
  return sums;
}

Eigen::Ref<const Eigen::MatrixXf> Cnn::logits(const Eigen::Ref<const Eigen::MatrixXf>& x) {
  const int n = static_cast<int>(x.cols());
  forward(x, n);
  const Eigen::MatrixXf& last = acts_.back();
  return last.leftCols(n);
}

}  // namespace trellis::worker
