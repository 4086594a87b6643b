// Errors, handle lifetime, metadata, host data, creation, random generators and process settings.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/DeviceGuard.h>
#include <torch/cuda.h>

#include <malloc.h>

#include <algorithm>
#include <climits>
#include <mutex>

#include "hdge_internal.hpp"

namespace hdge {

std::atomic<int64_t> live{0};

static char *dup_string(const char *s) {
  if (s == nullptr) s = "";
  size_t n = std::strlen(s);
  // libtorch messages end in a newline now and then; Go error strings should not.
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ')) n--;
  char *p = static_cast<char *>(std::malloc(n + 1));
  if (p == nullptr) return nullptr;
  std::memcpy(p, s, n);
  p[n] = 0;
  return p;
}

hdge_error *make_error(const char *op, const char *msg) {
  auto *e = static_cast<hdge_error *>(std::malloc(sizeof(hdge_error)));
  if (e == nullptr) return nullptr;  // out of memory while reporting: nothing better to do
  e->op = dup_string(op);
  e->msg = dup_string(msg);
  return e;
}

at::ScalarType scalar_type(int dtype) {
  switch (dtype) {
    case HDGE_FLOAT32: return at::kFloat;
    case HDGE_FLOAT64: return at::kDouble;
    case HDGE_INT64: return at::kLong;
    case HDGE_UINT8: return at::kByte;
    case HDGE_BOOL: return at::kBool;
    case HDGE_BFLOAT16: return at::kBFloat16;
    case HDGE_FLOAT16: return at::kHalf;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(dtype));
}

int dtype_code(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return HDGE_FLOAT32;
    case at::kDouble: return HDGE_FLOAT64;
    case at::kLong: return HDGE_INT64;
    case at::kByte: return HDGE_UINT8;
    case at::kBool: return HDGE_BOOL;
    case at::kBFloat16: return HDGE_BFLOAT16;
    case at::kHalf: return HDGE_FLOAT16;
    default: return -1;
  }
}

size_t element_size(int dtype) { return at::elementSize(scalar_type(dtype)); }

}  // namespace hdge

using hdge::T;
using hdge::wrap;

extern "C" {

void hdge_error_free(hdge_error *e) {
  if (e == nullptr) return;
  std::free(e->op);
  std::free(e->msg);
  std::free(e);
}

// ---- process ----

const char *hdge_version(void) { return TORCH_VERSION; }

void hdge_set_num_threads(int n) {
  try {
    if (n > 0) at::set_num_threads(n);
  } catch (...) {
  }
}

int hdge_get_num_threads(void) {
  try {
    return at::get_num_threads();
  } catch (...) {
    return 1;
  }
}

int hdge_cuda_available(void) {
  try {
    return torch::cuda::is_available() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int hdge_cuda_device_count(void) {
  try {
    return static_cast<int>(torch::cuda::device_count());
  } catch (...) {
    return 0;
  }
}

int hdge_cuda_bf16_supported(int index) {
  try {
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count())) return 0;
    at::Device dev(at::kCUDA, static_cast<c10::DeviceIndex>(index));
    c10::DeviceGuard guard(dev);
    // The cuDNN hook reads the current device's capability (>= 8.0); the product proves cuBLAS takes
    // bfloat16 there too.
    if (!at::detail::getCUDAHooks().supportsBFloat16ConvolutionWithCuDNNv8()) return 0;
    at::Tensor a = at::ones({16, 16}, at::TensorOptions().dtype(at::kBFloat16).device(dev));
    return at::matmul(a, a).sum().item<float>() == 16.0f * 256.0f ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

void hdge_manual_seed(uint64_t seed) {
  try {
    auto gen = at::detail::getDefaultCPUGenerator();
    {
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_current_seed(seed);
    }
    int n = static_cast<int>(torch::cuda::device_count());
    for (int i = 0; i < n; i++) {
      auto cg = at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(cg.mutex());
      cg.set_current_seed(seed);
    }
  } catch (...) {
  }
}

int hdge_set_malloc_arena_max(int n) {
#if defined(__GLIBC__)
  return n > 0 && mallopt(M_ARENA_MAX, n) == 1 ? 1 : 0;
#else
  (void)n;
  return -1;
#endif
}

int hdge_set_malloc_thresholds(int64_t mmap_threshold, int64_t trim_threshold) {
#if defined(__GLIBC__)
  int ok = 1;
  if (mmap_threshold > 0 && mallopt(M_MMAP_THRESHOLD, static_cast<int>(std::min<int64_t>(mmap_threshold, INT_MAX))) != 1) {
    ok = 0;
  }
  if (trim_threshold > 0 && mallopt(M_TRIM_THRESHOLD, static_cast<int>(std::min<int64_t>(trim_threshold, INT_MAX))) != 1) {
    ok = 0;
  }
  return ok;
#else
  (void)mmap_threshold;
  (void)trim_threshold;
  return -1;
#endif
}

int64_t hdge_live_tensors(void) { return hdge::live.load(std::memory_order_relaxed); }

// ---- lifetime and metadata ----

void hdge_tensor_free(hdge_tensor t) {
  if (t == nullptr) return;
  delete reinterpret_cast<at::Tensor *>(t);
  hdge::live.fetch_sub(1, std::memory_order_relaxed);
}

void hdge_tensor_free_many(hdge_tensor *ts, int64_t n) {
  int64_t freed = 0;
  for (int64_t i = 0; i < n; i++) {
    if (ts[i] == nullptr) continue;
    delete reinterpret_cast<at::Tensor *>(ts[i]);
    freed++;
  }
  hdge::live.fetch_sub(freed, std::memory_order_relaxed);
}

// Metadata readers cannot fail for the dense tensors this library creates; the catch-alls only keep
// an unexpected exception from unwinding into Go.
int hdge_tensor_dim(hdge_tensor t) {
  try {
    return static_cast<int>(T(t).dim());
  } catch (...) {
    return -1;
  }
}

int hdge_tensor_shape(hdge_tensor t, int64_t *out, int cap) {
  try {
    auto sizes = T(t).sizes();
    int d = static_cast<int>(sizes.size());
    for (int i = 0; i < d && i < cap; i++) out[i] = sizes[i];
    return d;
  } catch (...) {
    return -1;
  }
}

int64_t hdge_tensor_size(hdge_tensor t, int64_t dim) {
  try {
    auto sizes = T(t).sizes();
    int64_t d = static_cast<int64_t>(sizes.size());
    if (dim < 0) dim += d;
    if (dim < 0 || dim >= d) return -1;
    return sizes[dim];
  } catch (...) {
    return -1;
  }
}

int64_t hdge_tensor_numel(hdge_tensor t) {
  try {
    return T(t).numel();
  } catch (...) {
    return -1;
  }
}

int hdge_tensor_dtype(hdge_tensor t) {
  try {
    return hdge::dtype_code(T(t).scalar_type());
  } catch (...) {
    return -1;
  }
}

int64_t hdge_tensor_version(hdge_tensor t) {
  try {
    return static_cast<int64_t>(T(t)._version());
  } catch (...) {
    return -1;
  }
}

void hdge_tensor_device(hdge_tensor t, int *kind, int *index) {
  *kind = HDGE_CPU;
  *index = 0;
  try {
    auto d = T(t).device();
    if (d.is_cuda()) {
      *kind = HDGE_CUDA;
      *index = d.index();
    }
  } catch (...) {
  }
}

int hdge_tensor_requires_grad(hdge_tensor t) {
  try {
    return T(t).requires_grad() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

hdge_error *hdge_tensor_set_requires_grad(hdge_tensor t, int on) {
  HDGE_TRY
  T(t).set_requires_grad(on != 0);
  HDGE_CATCH("set_requires_grad")
}

int hdge_tensor_is_channels_last(hdge_tensor t) {
  try {
    const at::Tensor &x = T(t);
    return x.dim() == 4 && x.suggest_memory_format() == at::MemoryFormat::ChannelsLast ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

hdge_error *hdge_tensor_make_channels_last(hdge_tensor t) {
  HDGE_TRY
  at::Tensor &x = T(t);
  if (x.dim() != 4) {
    return hdge::make_error("make_channels_last",
                            ("needs a 4-d tensor, got " + std::to_string(x.dim()) + " dimensions").c_str());
  }
  at::NoGradGuard g;
  x.set_data(x.contiguous(at::MemoryFormat::ChannelsLast));
  HDGE_CATCH("make_channels_last")
}

// ---- host data ----

hdge_error *hdge_from_data(int dtype, const int64_t *shape, int ndim, const void *data, hdge_tensor *out) {
  HDGE_TRY
  at::Tensor t = at::empty(at::IntArrayRef(shape, ndim), at::TensorOptions().dtype(hdge::scalar_type(dtype)));
  size_t nbytes = static_cast<size_t>(t.numel()) * hdge::element_size(dtype);
  if (nbytes > 0) std::memcpy(t.data_ptr(), data, nbytes);
  *out = wrap(std::move(t));
  HDGE_CATCH("from_data")
}

hdge_error *hdge_tensor_copy_out(hdge_tensor t, int dtype, void *dst, int64_t numel) {
  HDGE_TRY
  at::NoGradGuard no_grad;
  const at::Tensor &src = T(t);
  if (src.numel() != numel)
    return hdge::make_error("copy_out", ("tensor has " + std::to_string(src.numel()) +
                                         " elements, destination holds " + std::to_string(numel))
                                            .c_str());
  at::Tensor c = src.detach().to(at::kCPU, hdge::scalar_type(dtype)).contiguous();
  size_t nbytes = static_cast<size_t>(numel) * hdge::element_size(dtype);
  if (nbytes > 0) std::memcpy(dst, c.data_ptr(), nbytes);
  HDGE_CATCH("copy_out")
}

hdge_error *hdge_tensor_copy_in(hdge_tensor t, int src_dtype, const void *src, int64_t numel) {
  HDGE_TRY
  at::NoGradGuard no_grad;
  at::Tensor &dst = T(t);
  if (dst.numel() != numel)
    return hdge::make_error("copy_in", ("tensor has " + std::to_string(dst.numel()) +
                                        " elements, source holds " + std::to_string(numel))
                                           .c_str());
  if (numel == 0) return nullptr;
  at::Tensor blob = at::from_blob(const_cast<void *>(src), dst.sizes(),
                                  at::TensorOptions().dtype(hdge::scalar_type(src_dtype)));
  dst.copy_(blob);
  HDGE_CATCH("copy_in")
}

hdge_error *hdge_tensor_item(hdge_tensor t, double *out) {
  HDGE_TRY
  *out = T(t).item<double>();
  HDGE_CATCH("item")
}

// ---- creation ----

hdge_error *hdge_zeros(const int64_t *shape, int ndim, int dtype, int dev_kind, int dev_index, hdge_tensor *out) {
  HDGE_TRY
  *out = wrap(at::zeros(at::IntArrayRef(shape, ndim), hdge::options(dtype, dev_kind, dev_index)));
  HDGE_CATCH("zeros")
}

hdge_error *hdge_ones(const int64_t *shape, int ndim, int dtype, int dev_kind, int dev_index, hdge_tensor *out) {
  HDGE_TRY
  *out = wrap(at::ones(at::IntArrayRef(shape, ndim), hdge::options(dtype, dev_kind, dev_index)));
  HDGE_CATCH("ones")
}

hdge_error *hdge_full(const int64_t *shape, int ndim, double v, int dtype, int dev_kind, int dev_index,
                      hdge_tensor *out) {
  HDGE_TRY
  auto opts = hdge::options(dtype, dev_kind, dev_index);
  at::Scalar s = at::isFloatingType(opts.dtype().toScalarType()) ? at::Scalar(v) : at::Scalar(static_cast<int64_t>(v));
  if (opts.dtype().toScalarType() == at::kBool) s = at::Scalar(v != 0);
  *out = wrap(at::full(at::IntArrayRef(shape, ndim), s, opts));
  HDGE_CATCH("full")
}

hdge_error *hdge_arange(int64_t n, int dtype, int dev_kind, int dev_index, hdge_tensor *out) {
  HDGE_TRY
  *out = wrap(at::arange(n, hdge::options(dtype, dev_kind, dev_index)));
  HDGE_CATCH("arange")
}

hdge_error *hdge_zeros_like(hdge_tensor t, hdge_tensor *out) {
  HDGE_TRY
  *out = wrap(at::zeros_like(T(t)));
  HDGE_CATCH("zeros_like")
}

// ---- random ----

static at::Generator &G(hdge_generator g) { return hdge::gen(g); }

static c10::optional<at::Generator> optgen(hdge_generator g) {
  if (g == nullptr) return c10::nullopt;
  return G(g);
}

hdge_error *hdge_generator_new(uint64_t seed, int dev_kind, int dev_index, hdge_generator *out) {
  HDGE_TRY
  at::Generator gen;
  if (dev_kind == HDGE_CUDA) {
    // Cloning the device's default generator works without CUDA headers in this library.
    auto def = at::globalContext().defaultGenerator(hdge::device(dev_kind, dev_index));
    std::lock_guard<std::mutex> lock(def.mutex());
    gen = def.clone();
  } else {
    gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  }
  gen.set_current_seed(seed);
  *out = reinterpret_cast<hdge_generator>(new at::Generator(std::move(gen)));
  HDGE_CATCH("generator_new")
}

void hdge_generator_free(hdge_generator g) { delete reinterpret_cast<at::Generator *>(g); }

hdge_error *hdge_generator_get_state(hdge_generator g, uint8_t **data, int64_t *n) {
  HDGE_TRY
  at::Generator gen = g == nullptr ? at::detail::getDefaultCPUGenerator() : G(g);
  at::Tensor st;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    st = gen.get_state();
  }
  st = st.to(at::kCPU, at::kByte).contiguous();
  *n = st.numel();
  *data = static_cast<uint8_t *>(std::malloc(st.numel() > 0 ? st.numel() : 1));
  if (*data == nullptr) throw std::bad_alloc();
  std::memcpy(*data, st.data_ptr(), st.numel());
  HDGE_CATCH("generator_get_state")
}

hdge_error *hdge_generator_set_state(hdge_generator g, const uint8_t *data, int64_t n) {
  HDGE_TRY
  at::Generator gen = g == nullptr ? at::detail::getDefaultCPUGenerator() : G(g);
  at::Tensor st = at::empty({n}, at::TensorOptions().dtype(at::kByte));
  if (n > 0) std::memcpy(st.data_ptr(), data, n);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(st);
  HDGE_CATCH("generator_set_state")
}

hdge_error *hdge_randn(hdge_generator g, const int64_t *shape, int ndim, int dtype, int dev_kind, int dev_index,
                       hdge_tensor *out) {
  HDGE_TRY
  *out = wrap(at::randn(at::IntArrayRef(shape, ndim), optgen(g), hdge::options(dtype, dev_kind, dev_index)));
  HDGE_CATCH("randn")
}

hdge_error *hdge_rand(hdge_generator g, const int64_t *shape, int ndim, int dtype, int dev_kind, int dev_index,
                      hdge_tensor *out) {
  HDGE_TRY
  *out = wrap(at::rand(at::IntArrayRef(shape, ndim), optgen(g), hdge::options(dtype, dev_kind, dev_index)));
  HDGE_CATCH("rand")
}

hdge_error *hdge_randint(hdge_generator g, int64_t low, int64_t high, const int64_t *shape, int ndim, int dev_kind,
                         int dev_index, hdge_tensor *out) {
  HDGE_TRY
  *out = wrap(at::randint(low, high, at::IntArrayRef(shape, ndim), optgen(g),
                          hdge::options(HDGE_INT64, dev_kind, dev_index)));
  HDGE_CATCH("randint")
}

hdge_error *hdge_randn_like(hdge_generator g, hdge_tensor t, hdge_tensor *out) {
  HDGE_TRY
  at::NoGradGuard no_grad;
  *out = wrap(at::empty_like(T(t)).normal_(0, 1, optgen(g)));
  HDGE_CATCH("randn_like")
}

hdge_error *hdge_rand_like(hdge_generator g, hdge_tensor t, hdge_tensor *out) {
  HDGE_TRY
  at::NoGradGuard no_grad;
  *out = wrap(at::empty_like(T(t)).uniform_(0, 1, optgen(g)));
  HDGE_CATCH("rand_like")
}

}  // extern "C"
