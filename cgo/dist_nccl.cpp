// The NCCL process group (CUDA tensors). The Makefile defines USE_C10D_NCCL only when the libtorch
// it builds against has CUDA and NCCL's header is found; otherwise this file makes a clear error.
#include "hdge_dist_internal.hpp"

#ifdef USE_C10D_NCCL
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <stdexcept>

namespace hdge::dist {

#ifdef USE_C10D_NCCL
bool have_nccl() { return true; }

c10::intrusive_ptr<BackendT> make_nccl(const c10::intrusive_ptr<c10d::Store> &store, int rank, int size,
                                       std::chrono::milliseconds timeout, int device) {
  // NCCL binds a communicator to the device current when it is first used.
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts);
}
#else
bool have_nccl() { return false; }

c10::intrusive_ptr<BackendT> make_nccl(const c10::intrusive_ptr<c10d::Store> &, int, int, std::chrono::milliseconds,
                                       int) {
  throw std::runtime_error(
      "this shim was built without NCCL (it needs a CUDA libtorch and nccl.h; see the Makefile's NCCL_INCLUDE)");
}
#endif

}  // namespace hdge::dist
