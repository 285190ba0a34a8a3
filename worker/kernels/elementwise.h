#pragma once
// The MLP's and the CNN's elementwise passes over column-major float blocks (m rows = units, n columns
// = samples, leading dimension ld >= m), each one pass a column at a time, run on the vector
// path of kernels/vector_path.h. Every path gives the same bits (see there). `db` (m floats)
// is overwritten with the column sum of the block's result: the bias gradient of the layer.

namespace trellis::worker::kernels {

// a = a + b (b: m floats, per row).
void bias_add(float* a, int lda, const float* b, int m, int n);
// a = relu(a + b); relu(x) = x > 0 ? x : 0 (so NaN -> 0).
void bias_relu(float* a, int lda, const float* b, int m, int n);
// a = tanh(a + b), Eigen's rational approximation (within 1e-6 of std::tanh), on every path.
void bias_tanh(float* a, int lda, const float* b, int m, int n);
// a = relu(a), as bias_relu without the bias.
void relu(float* a, int lda, int m, int n);
// d = a > 0 ? d : 0 (a: the relu layer's output), without the row sums (a CNN's conv layer
// sums its bias gradient per channel itself).
void relu_mask(float* d, int ldd, const float* a, int lda, int m, int n);
// d = a > 0 ? d : 0 (a: the relu layer's output), db = row sums of d.
void relu_backward(float* d, int ldd, const float* a, int lda, int m, int n, float* db);
// d = d * (1 - a * a) (a: the tanh layer's output), db = row sums of d.
void tanh_backward(float* d, int ldd, const float* a, int lda, int m, int n, float* db);
// d = d * f (f: the stored derivative, mask included), db = row sums of d.
void mul_backward(float* d, int ldd, const float* f, int ldf, int m, int n, float* db);

}  // namespace trellis::worker::kernels
