/*
 * hdge_torch.h: a small C ABI over libtorch's C++ API, built into libhdgetorch.so.
 *
 * Conventions (kept uniform so the Go side can stay mechanical):
 *   - A tensor handle is an opaque pointer to a heap at::Tensor. Every function that creates a handle
 *     increments a process-wide live counter; hdge_tensor_free decrements it.
 *   - Functions that can fail return NULL on success or a malloc'd hdge_error (free it with
 *     hdge_error_free). Results come back through out-parameters. No C++ exception ever leaves the
 *     library, and no error state is kept between calls (a Go goroutine may change OS thread
 *     between two calls).
 *   - Grad mode is an argument (grad != 0: record autograd) applied inside the call, because
 *     libtorch's grad mode is thread-local.
 *   - dtype codes and device kinds below match the Go package's DType and Device.
 */
#ifndef HDGE_TORCH_H
#define HDGE_TORCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hdge_tensor_s *hdge_tensor;
typedef struct hdge_generator_s *hdge_generator;

typedef struct hdge_error {
  char *op;  /* the C function's op name */
  char *msg; /* libtorch's message, without backtrace */
} hdge_error;

void hdge_error_free(hdge_error *e);

enum { HDGE_FLOAT32 = 0, HDGE_FLOAT64 = 1, HDGE_INT64 = 2, HDGE_UINT8 = 3, HDGE_BOOL = 4, HDGE_BFLOAT16 = 5, HDGE_FLOAT16 = 6 };
enum { HDGE_CPU = 0, HDGE_CUDA = 1 };

/* ---- process ---- */
const char *hdge_version(void); /* static string, e.g. "1.13.0" */
void hdge_set_num_threads(int n);
int hdge_get_num_threads(void);
int hdge_cuda_available(void);
int hdge_cuda_device_count(void);
/* 1 when CUDA device index computes bfloat16 matrix products and convolutions natively (compute
 * capability 8.0 or later with cuDNN 8), else 0; never fails. */
int hdge_cuda_bf16_supported(int index);
void hdge_manual_seed(uint64_t seed); /* CPU and every CUDA default generator */
int64_t hdge_live_tensors(void);
/* Sets glibc malloc's mmap and trim thresholds (bytes; <= 0 leaves one as it is). Training frees and
 * re-allocates the same activation buffers every step; above the mmap threshold each one is a fresh
 * mmap whose pages fault in zeroed again. Returns 1 when every value given was accepted, 0 when
 * one was refused, -1 where the C library is not glibc. */
int hdge_set_malloc_thresholds(int64_t mmap_threshold, int64_t trim_threshold);
/* Caps glibc's malloc arenas (M_ARENA_MAX); 1 when set, 0 when refused, -1 without glibc. */
int hdge_set_malloc_arena_max(int n);

/* ---- lifetime and metadata ---- */
void hdge_tensor_free(hdge_tensor t);
void hdge_tensor_free_many(hdge_tensor *ts, int64_t n); /* NULL entries are skipped */
int hdge_tensor_dim(hdge_tensor t);
/* Writes min(dim, cap) sizes to out and returns dim. */
int hdge_tensor_shape(hdge_tensor t, int64_t *out, int cap);
/* Size of dimension dim (negative counts from the end); -1 when out of range. */
int64_t hdge_tensor_size(hdge_tensor t, int64_t dim);
int64_t hdge_tensor_numel(hdge_tensor t);
int hdge_tensor_dtype(hdge_tensor t); /* -1 for a dtype outside the seven codes */
/* The version counter every in-place change bumps (optimizer steps, copy_); -1 on failure. It tells a
 * cache of converted copies that its copy is stale. */
int64_t hdge_tensor_version(hdge_tensor t);
void hdge_tensor_device(hdge_tensor t, int *kind, int *index);
int hdge_tensor_requires_grad(hdge_tensor t);
hdge_error *hdge_tensor_set_requires_grad(hdge_tensor t, int on);
/* 1 when t is a 4-d tensor laid out channels-last (NHWC in memory), else 0. */
int hdge_tensor_is_channels_last(hdge_tensor t);
/* Re-lays a 4-d leaf tensor (a parameter) out channels-last in place: same handle, values, shape
 * and requires_grad, so optimizers and autograd keep referring to it. */
hdge_error *hdge_tensor_make_channels_last(hdge_tensor t);

/* ---- host data ---- */
/* New CPU tensor of dtype and shape holding a copy of data (numel elements of that dtype). */
hdge_error *hdge_from_data(int dtype, const int64_t *shape, int ndim, const void *data, hdge_tensor *out);
/* Copies t (any device, any dtype: converted to dtype) into dst, which holds numel elements. */
hdge_error *hdge_tensor_copy_out(hdge_tensor t, int dtype, void *dst, int64_t numel);
/* Overwrites t in place (no autograd) from numel host elements of src_dtype. */
hdge_error *hdge_tensor_copy_in(hdge_tensor t, int src_dtype, const void *src, int64_t numel);
hdge_error *hdge_tensor_item(hdge_tensor t, double *out);

/* ---- creation ---- */
hdge_error *hdge_zeros(const int64_t *shape, int ndim, int dtype, int dev_kind, int dev_index, hdge_tensor *out);
hdge_error *hdge_ones(const int64_t *shape, int ndim, int dtype, int dev_kind, int dev_index, hdge_tensor *out);
hdge_error *hdge_full(const int64_t *shape, int ndim, double v, int dtype, int dev_kind, int dev_index,
                      hdge_tensor *out);
hdge_error *hdge_arange(int64_t n, int dtype, int dev_kind, int dev_index, hdge_tensor *out);
hdge_error *hdge_zeros_like(hdge_tensor t, hdge_tensor *out);

/* ---- random; gen may be NULL for the device's default generator ---- */
hdge_error *hdge_generator_new(uint64_t seed, int dev_kind, int dev_index, hdge_generator *out);
void hdge_generator_free(hdge_generator g);
/* State as a malloc'd byte buffer (free with free()); g NULL = CPU default generator. */
hdge_error *hdge_generator_get_state(hdge_generator g, uint8_t **data, int64_t *n);
hdge_error *hdge_generator_set_state(hdge_generator g, const uint8_t *data, int64_t n);
hdge_error *hdge_randn(hdge_generator g, const int64_t *shape, int ndim, int dtype, int dev_kind, int dev_index,
                       hdge_tensor *out);
hdge_error *hdge_rand(hdge_generator g, const int64_t *shape, int ndim, int dtype, int dev_kind, int dev_index,
                      hdge_tensor *out);
hdge_error *hdge_randint(hdge_generator g, int64_t low, int64_t high, const int64_t *shape, int ndim, int dev_kind,
                         int dev_index, hdge_tensor *out);
hdge_error *hdge_randn_like(hdge_generator g, hdge_tensor t, hdge_tensor *out);
hdge_error *hdge_rand_like(hdge_generator g, hdge_tensor t, hdge_tensor *out);

/* ---- element-wise families, selected by op code ---- */
enum {
  HDGE_NEG, HDGE_ABS, HDGE_EXP, HDGE_LOG, HDGE_LOG1P, HDGE_SQRT, HDGE_SIGN, HDGE_SQUARE, HDGE_RELU,
  HDGE_SIGMOID, HDGE_TANH, HDGE_CONTIGUOUS, HDGE_CLONE, HDGE_DETACH,
  HDGE_CHANNELS_LAST, /* a 4-d tensor in NHWC memory order (same values and shape) */
  HDGE_UNARY_COUNT
};
hdge_error *hdge_unary(int op, hdge_tensor a, int grad, hdge_tensor *out);

enum { HDGE_ADD, HDGE_SUB, HDGE_MUL, HDGE_DIV, HDGE_MINIMUM, HDGE_MAXIMUM, HDGE_EQ, HDGE_MATMUL, HDGE_BINARY_COUNT };
hdge_error *hdge_binary(int op, hdge_tensor a, hdge_tensor b, int grad, hdge_tensor *out);

enum {
  HDGE_ADD_SCALAR, HDGE_SUB_SCALAR, HDGE_MUL_SCALAR, HDGE_DIV_SCALAR, HDGE_POW_SCALAR, HDGE_LEAKY_RELU,
  HDGE_SCALAR_COUNT
};
hdge_error *hdge_scalar(int op, hdge_tensor a, double v, int grad, hdge_tensor *out);

/* Reductions over dims (all dims when all != 0). */
enum { HDGE_SUM, HDGE_MEAN, HDGE_LOGSUMEXP, HDGE_REDUCE_COUNT };
hdge_error *hdge_reduce(int op, hdge_tensor a, const int64_t *dims, int ndims, int all, int keep, int grad,
                        hdge_tensor *out);
hdge_error *hdge_norm(hdge_tensor a, double p, const int64_t *dims, int ndims, int all, int keep, int grad,
                      hdge_tensor *out);

/* ---- shape and conversion ---- */
hdge_error *hdge_to(hdge_tensor t, int dev_kind, int dev_index, int dtype, int grad, hdge_tensor *out);
hdge_error *hdge_reshape(hdge_tensor t, const int64_t *shape, int ndim, int grad, hdge_tensor *out);
hdge_error *hdge_transpose(hdge_tensor t, int64_t d0, int64_t d1, int grad, hdge_tensor *out);
hdge_error *hdge_permute(hdge_tensor t, const int64_t *dims, int ndims, int grad, hdge_tensor *out);
hdge_error *hdge_narrow(hdge_tensor t, int64_t dim, int64_t start, int64_t length, int grad, hdge_tensor *out);
hdge_error *hdge_squeeze(hdge_tensor t, int64_t dim, int grad, hdge_tensor *out);
hdge_error *hdge_unsqueeze(hdge_tensor t, int64_t dim, int grad, hdge_tensor *out);
hdge_error *hdge_flatten(hdge_tensor t, int64_t start, int64_t end, int grad, hdge_tensor *out);
hdge_error *hdge_flip(hdge_tensor t, const int64_t *dims, int ndims, int grad, hdge_tensor *out);

/* ---- in place, never recorded by autograd ---- */
hdge_error *hdge_copy_(hdge_tensor dst, hdge_tensor src);
hdge_error *hdge_zero_(hdge_tensor t);
hdge_error *hdge_fill_(hdge_tensor t, double v);

/* ---- neural-network maths; optional tensors may be NULL ---- */
/* dtype >= 0 converts x, w and b to that dtype inside the call (differentiably: gradients reach the
 * originals in their own dtype), as autocast does for a lower-precision compute type; -1 computes in
 * the inputs' own dtype. Callers pass already-converted weights to skip their conversion. */
hdge_error *hdge_conv2d(hdge_tensor x, hdge_tensor w, hdge_tensor b, int64_t stride_h, int64_t stride_w,
                        int64_t pad_h, int64_t pad_w, int64_t dilation, int64_t groups, int dtype, int grad,
                        hdge_tensor *out);
hdge_error *hdge_linear(hdge_tensor x, hdge_tensor w, hdge_tensor b, int dtype, int grad, hdge_tensor *out);
hdge_error *hdge_batch_norm(hdge_tensor x, hdge_tensor w, hdge_tensor b, hdge_tensor run_mean, hdge_tensor run_var,
                            int train, double momentum, double eps, int grad, hdge_tensor *out);
/* Draws the mask from gen (required when train != 0 and p > 0: nothing falls back to the global generator). */
hdge_error *hdge_dropout(hdge_tensor x, double p, int train, hdge_generator gen, int grad, hdge_tensor *out);
/* count_include_pad != 0 averages padded zeros in (PyTorch's default); 0 divides by the window's
 * in-bounds size, as the FID Inception-v3's pooling branches do. */
hdge_error *hdge_avg_pool2d(hdge_tensor x, int64_t kernel, int64_t stride, int64_t padding, int count_include_pad,
                            int grad, hdge_tensor *out);
hdge_error *hdge_max_pool2d(hdge_tensor x, int64_t kernel, int64_t stride, int64_t padding, int grad,
                            hdge_tensor *out);
hdge_error *hdge_adaptive_avg_pool2d(hdge_tensor x, int64_t oh, int64_t ow, int grad, hdge_tensor *out);
/* F.interpolate(x, size=(oh, ow), mode="bilinear", align_corners) on a 4-d tensor. */
hdge_error *hdge_upsample_bilinear2d(hdge_tensor x, int64_t oh, int64_t ow, int align_corners, int grad,
                                     hdge_tensor *out);
/* lo/hi are ignored when has_lo/has_hi is 0 */
hdge_error *hdge_clamp(hdge_tensor a, int has_lo, double lo, int has_hi, double hi, int grad, hdge_tensor *out);
hdge_error *hdge_where(hdge_tensor cond, hdge_tensor a, hdge_tensor b, int grad, hdge_tensor *out);
hdge_error *hdge_max_dim(hdge_tensor a, int64_t dim, int keep, int grad, hdge_tensor *values, hdge_tensor *indices);
hdge_error *hdge_argmax(hdge_tensor a, int64_t dim, int keep, int grad, hdge_tensor *out);
hdge_error *hdge_log_softmax(hdge_tensor a, int64_t dim, int grad, hdge_tensor *out);
hdge_error *hdge_softmax(hdge_tensor a, int64_t dim, int grad, hdge_tensor *out);
/* reduction: 0 none, 1 mean, 2 sum (at::Reduction's values) */
hdge_error *hdge_cross_entropy(hdge_tensor logits, hdge_tensor target, double label_smoothing, int reduction,
                               int grad, hdge_tensor *out);
hdge_error *hdge_normalize(hdge_tensor a, double p, int64_t dim, double eps, int grad, hdge_tensor *out);
hdge_error *hdge_gather(hdge_tensor a, int64_t dim, hdge_tensor idx, int grad, hdge_tensor *out);
hdge_error *hdge_index_select(hdge_tensor a, int64_t dim, hdge_tensor idx, int grad, hdge_tensor *out);
hdge_error *hdge_cat(const hdge_tensor *ts, int n, int64_t dim, int grad, hdge_tensor *out);
hdge_error *hdge_stack(const hdge_tensor *ts, int n, int64_t dim, int grad, hdge_tensor *out);
hdge_error *hdge_einsum(const char *eq, int64_t eq_len, const hdge_tensor *ts, int n, int grad, hdge_tensor *out);
hdge_error *hdge_reflect_pad2d(hdge_tensor x, int64_t left, int64_t right, int64_t top, int64_t bottom, int grad,
                               hdge_tensor *out);
hdge_error *hdge_one_hot(hdge_tensor idx, int64_t num_classes, hdge_tensor *out);

/* ---- autograd ---- */
hdge_error *hdge_backward(hdge_tensor loss);
/* *out is NULL when t has no gradient. */
hdge_error *hdge_grad(hdge_tensor t, hdge_tensor *out);
hdge_error *hdge_zero_grad(const hdge_tensor *ts, int n); /* grads set to undefined (set_to_none) */
/* torch::autograd::grad with grad_outputs = ones; writes nin handles to outs. */
hdge_error *hdge_gradients(const hdge_tensor *outputs, int nout, const hdge_tensor *inputs, int nin,
                           int create_graph, hdge_tensor *outs);

/* Loss scaling (fp16): multiplies every defined gradient of params by inv_scale in place and sets
 * *found_inf to 1 when any of them holds an inf or NaN afterwards (one host synchronisation for all). */
hdge_error *hdge_unscale_grads(const hdge_tensor *params, int n, double inv_scale, int *found_inf);

/* ---- fused optimizer steps over all parameters, PyTorch semantics; params without grad are skipped ---- */
/* steps[i] is param i's step count, incremented here (PyTorch counts per parameter). */
hdge_error *hdge_adam_step(const hdge_tensor *params, const hdge_tensor *exp_avg, const hdge_tensor *exp_avg_sq,
                           int64_t *steps, int n, double lr, double beta1, double beta2, double eps,
                           double weight_decay);
/* has_buf[i] != 0 once momentum_buf[i] holds a buffer (PyTorch's first step clones the gradient). */
hdge_error *hdge_sgd_step(const hdge_tensor *params, const hdge_tensor *momentum_buf, uint8_t *has_buf, int n,
                          double lr, double momentum, double dampening, double weight_decay, int nesterov);

#ifdef __cplusplus
}
#endif

#endif
