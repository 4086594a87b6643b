// What the distributed translation units share: the backend type across libtorch versions and the
// two constructors, each in a file of its own so that only dist_gloo.cpp needs Gloo's headers and
// only dist_nccl.cpp NCCL's.
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/version.h>

#include <chrono>
#include <string>

#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

#include "hdge_dist.h"

namespace hdge::dist {

// libtorch 2 puts a Backend between ProcessGroup and the Gloo/NCCL classes; the collectives have
// the same signatures on both.
#if TORCH_VERSION_MAJOR >= 2
using BackendT = c10d::Backend;
#else
using BackendT = c10d::ProcessGroup;
#endif

// Throw (caught by the C entry point) when the backend cannot be made.
c10::intrusive_ptr<BackendT> make_gloo(const c10::intrusive_ptr<c10d::Store> &store, int rank, int size,
                                       std::chrono::milliseconds timeout, const std::string &iface,
                                       const std::string &host);
c10::intrusive_ptr<BackendT> make_nccl(const c10::intrusive_ptr<c10d::Store> &store, int rank, int size,
                                       std::chrono::milliseconds timeout, int device);
bool have_nccl();

}  // namespace hdge::dist
