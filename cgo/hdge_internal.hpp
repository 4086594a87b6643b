// Helpers shared by the shim's translation units. Only ATen and the autograd headers are included
// (not <torch/torch.h>) because each extra header costs compile time in every file.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "hdge_torch.h"

namespace hdge {

extern std::atomic<int64_t> live;

hdge_error *make_error(const char *op, const char *msg);

inline at::Tensor &T(hdge_tensor h) { return *reinterpret_cast<at::Tensor *>(h); }

inline hdge_tensor wrap(at::Tensor t) {
  auto *p = new at::Tensor(std::move(t));
  live.fetch_add(1, std::memory_order_relaxed);
  return reinterpret_cast<hdge_tensor>(p);
}

inline at::Generator &gen(hdge_generator g) { return *reinterpret_cast<at::Generator *>(g); }

inline c10::optional<at::Tensor> opt(hdge_tensor h) {
  if (h == nullptr) return c10::nullopt;
  return T(h);
}

at::ScalarType scalar_type(int dtype);
int dtype_code(at::ScalarType st);
size_t element_size(int dtype);

inline at::Device device(int kind, int index) {
  if (kind == HDGE_CUDA) return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  return at::Device(at::kCPU);
}

inline at::TensorOptions options(int dtype, int kind, int index) {
  return at::TensorOptions().dtype(scalar_type(dtype)).device(device(kind, index));
}

// A Go float64 that is an integer becomes an integer Scalar for integer tensors, so that
// AddScalar(int64 tensor, 1) keeps int64 like Python's `t + 1`.
inline at::Scalar scalar_for(const at::Tensor &t, double v) {
  if (!at::isFloatingType(t.scalar_type()) && !at::isComplexType(t.scalar_type()) && v == static_cast<double>(static_cast<int64_t>(v)))
    return at::Scalar(static_cast<int64_t>(v));
  return at::Scalar(v);
}

}  // namespace hdge

// Every exported function body sits between HDGE_TRY and HDGE_CATCH(op): exceptions become
// hdge_error values and never unwind into Go.
#define HDGE_TRY try {
#define HDGE_CATCH(op)                                                 \
  }                                                                    \
  catch (const c10::Error &e) {                                        \
    return hdge::make_error(op, e.what_without_backtrace());           \
  }                                                                    \
  catch (const std::exception &e) {                                    \
    return hdge::make_error(op, e.what());                             \
  }                                                                    \
  catch (...) {                                                        \
    return hdge::make_error(op, "unknown C++ exception");              \
  }                                                                    \
  return nullptr;
