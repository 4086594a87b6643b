// The Gloo process group (CPU tensors). Compiled with -DUSE_C10D_GLOO and Gloo's headers.
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include "hdge_dist_internal.hpp"

namespace hdge::dist {

c10::intrusive_ptr<BackendT> make_gloo(const c10::intrusive_ptr<c10d::Store> &store, int rank, int size,
                                       std::chrono::milliseconds timeout, const std::string &iface,
                                       const std::string &host) {
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  if (!iface.empty()) {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
  } else if (!host.empty()) {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
  } else {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  // Two threads let one bucket's reduction run while the next is handed over, as DDP does.
  opts->threads = 2;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
}

}  // namespace hdge::dist
