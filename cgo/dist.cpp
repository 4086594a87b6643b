// Rendezvous over c10d's TCPStore, bucketed collectives on a process group, and peers' liveness.
//
// Liveness: every rank's heartbeat thread bumps "hdge/hb/<rank>" in the store every heartbeat_ms
// through a store connection of its own, and reads every peer's counter. When a collective fails
// (Gloo reports a closed connection within milliseconds of a peer's death, but not which rank it
// was), the failing rank waits until some peer's counter has stood still for a few heartbeats and
// names that rank; a rank that itself gave up because of another writes "hdge/abort/<rank>" first,
// so that it is not named in turn. A peer whose counter stands still for dead_after_ms breaks the
// group even while no collective reports anything (a machine that vanished keeps its sockets open).
// Rank 0 hosts the store, so a store that stops answering means rank 0 was lost.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "hdge_dist_internal.hpp"
#include "hdge_internal.hpp"

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace hdge::dist {
namespace {

std::string hb_key(int r) { return "hdge/hb/" + std::to_string(r); }
std::string abort_key(int r) { return "hdge/abort/" + std::to_string(r); }
std::string closed_key(int r) { return "hdge/closed/" + std::to_string(r); }
std::string joined_key(int r) { return "hdge/joined/" + std::to_string(r); }

std::string join_ranks(const std::vector<int> &rs) {
  std::ostringstream o;
  for (size_t i = 0; i < rs.size(); i++) o << (i ? "," : "") << rs[i];
  return o.str();
}

std::vector<int> parse_ranks(const std::vector<uint8_t> &v) {
  std::vector<int> out;
  std::string s(v.begin(), v.end()), cur;
  std::istringstream in(s);
  while (std::getline(in, cur, ','))
    if (!cur.empty()) out.push_back(std::stoi(cur));
  return out;
}

std::vector<uint8_t> bytes(const std::string &s) { return std::vector<uint8_t>(s.begin(), s.end()); }

c10::intrusive_ptr<c10d::TCPStore> connect_store(const std::string &host, int port, bool server, int world,
                                                 milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(port);
  o.isServer = server;
  if (server) o.numWorkers = static_cast<size_t>(world);
  o.waitWorkers = false;  // the process group's own rendezvous waits for every rank
  o.timeout = timeout;
  return c10::make_intrusive<c10d::TCPStore>(host, o);
}

}  // namespace

struct Group {
  int rank = 0, world = 1, backend = HDGE_DIST_GLOO;
  std::string host;
  int port = 0;
  milliseconds connect_timeout{30000}, op_timeout{300000}, heartbeat{250}, dead_after{30000};
  c10::intrusive_ptr<c10d::TCPStore> store;  // used only by the thread calling the collectives
  c10::intrusive_ptr<BackendT> pg;
  std::vector<at::Tensor> buckets;  // flat buffers reused from call to call

  // Shared with the heartbeat thread, under mu.
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  bool store_lost = false;
  std::vector<int64_t> last_value;
  std::vector<Clock::time_point> last_change;
  std::string broken;     // why the group is unusable; empty while healthy
  std::vector<int> lost;  // the ranks named in broken
  std::thread hb;

  void set_broken(const std::string &why, std::vector<int> ranks) {
    if (!broken.empty()) return;
    broken = why;
    lost = std::move(ranks);
  }

  void heartbeat_loop(c10::intrusive_ptr<c10d::TCPStore> hs) {
    std::unique_lock<std::mutex> lk(mu);
    while (!stopping) {
      lk.unlock();
      std::vector<int64_t> vals(world, 0);
      bool ok = true;
      try {
        hs->add(hb_key(rank), 1);
        for (int p = 0; p < world; p++)
          if (p != rank) vals[p] = hs->add(hb_key(p), 0);
      } catch (...) {
        ok = false;
      }
      lk.lock();
      if (stopping) break;
      auto now = Clock::now();
      if (!ok) {
        if (!store_lost) store_lost = true;
        if (rank != 0) set_broken("rank 0 was lost (the store it hosts stopped answering)", {0});
      } else {
        std::vector<int> stale;
        for (int p = 0; p < world; p++) {
          if (p == rank) continue;
          if (vals[p] != last_value[p]) {
            last_value[p] = vals[p];
            last_change[p] = now;
          } else if (now - last_change[p] > dead_after) {
            stale.push_back(p);
          }
        }
        if (!stale.empty() && broken.empty()) {
          lk.unlock();
          // A rank that closed or gave up on its own stops beating without being lost.
          std::vector<int> lostNow;
          try {
            for (int p : stale)
              if (!hs->check({closed_key(p)}) && !hs->check({abort_key(p)})) lostNow.push_back(p);
          } catch (...) {
          }
          lk.lock();
          if (!lostNow.empty())
            set_broken("lost rank " + join_ranks(lostNow) + ": no heartbeat for " +
                           std::to_string(dead_after.count()) + " ms",
                       lostNow);
        }
      }
      cv.wait_for(lk, heartbeat, [&] { return stopping; });
    }
  }

  // After a collective failed with msg: find the peers that stopped beating, record why the
  // group is broken, and tell the others this rank gave up.
  std::string diagnose(const std::string &op, const std::string &msg) {
    std::unique_lock<std::mutex> lk(mu);
    if (broken.empty()) {
      auto start = Clock::now();
      auto still = heartbeat * 4;
      auto give_up = start + still + heartbeat * 8 + milliseconds(1000);
      std::vector<int> stale;
      while (Clock::now() < give_up) {
        if (store_lost && rank != 0) {
          stale = {0};
          break;
        }
        stale.clear();
        auto now = Clock::now();
        for (int p = 0; p < world; p++)
          if (p != rank && now - last_change[p] > still) stale.push_back(p);
        if (!stale.empty()) break;
        cv.wait_for(lk, heartbeat);
      }
      lk.unlock();
      std::vector<int> lostRanks, named;
      for (int p : stale) {
        bool aborted = false;
        try {
          if (store->check({abort_key(p)})) {
            aborted = true;
            for (int q : parse_ranks(store->get(abort_key(p))))
              if (q != rank && std::find(named.begin(), named.end(), q) == named.end()) named.push_back(q);
          }
        } catch (...) {
        }
        if (!aborted) lostRanks.push_back(p);
      }
      if (lostRanks.empty()) lostRanks = named;
      std::sort(lostRanks.begin(), lostRanks.end());
      try {
        store->set(abort_key(rank), bytes(join_ranks(lostRanks)));
      } catch (...) {
      }
      lk.lock();
      if (lostRanks.empty())
        set_broken(op + " failed: " + msg, {});
      else
        set_broken(op + " failed: lost rank " + join_ranks(lostRanks) + " (" + msg + ")", lostRanks);
    }
    return broken;
  }

  void check_healthy(const char *op) {
    std::lock_guard<std::mutex> lk(mu);
    if (!broken.empty()) throw std::runtime_error(std::string(op) + ": process group is broken: " + broken);
  }

  // Waits for every work; a failure or a timeout breaks the group and throws its reason.
  void wait_all(std::vector<c10::intrusive_ptr<c10d::Work>> &ws, const char *op, milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    std::string err;
    for (auto &w : ws) {
      while (err.empty()) {
        {
          std::lock_guard<std::mutex> lk(mu);
          if (!broken.empty()) err = "the heartbeat found " + broken;
        }
        if (!err.empty()) break;
        auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
          err = "timed out after " + std::to_string(timeout.count()) + " ms";
          break;
        }
        try {
          // Short slices so that the heartbeat's verdict is seen while Gloo still waits.
          w->wait(std::min(left, milliseconds(100)));
          break;
        } catch (const c10::Error &e) {
          if (!w->isCompleted()) continue;  // this slice timed out
          try {
            w->wait();
            break;
          } catch (const c10::Error &e2) {
            err = e2.what_without_backtrace();
          } catch (const std::exception &e2) {
            err = e2.what();
          }
        } catch (const std::exception &e) {
          err = e.what();
        }
      }
      if (!err.empty()) break;
    }
    if (!err.empty()) {
      while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
      throw std::runtime_error(diagnose(op, err));
    }
  }

  milliseconds timeout_or_default(int64_t ms) const { return ms > 0 ? milliseconds(ms) : op_timeout; }
};

namespace {

struct Bucket {
  at::Tensor flat;
  std::vector<int> members;  // indices into the tensor list
};

// Packs tensors in order into buckets of one dtype and device, at most bucket_bytes each.
std::vector<Bucket> plan(Group &g, const std::vector<at::Tensor> &ts, int64_t bucket_bytes) {
  std::vector<Bucket> out;
  int64_t bytes_in = 0;
  std::vector<std::pair<std::vector<int>, int64_t>> groups;
  for (size_t i = 0; i < ts.size(); i++) {
    const auto &t = ts[i];
    int64_t b = t.numel() * static_cast<int64_t>(t.element_size());
    bool fresh = groups.empty();
    if (!fresh) {
      const auto &first = ts[groups.back().first.front()];
      fresh = first.scalar_type() != t.scalar_type() || first.device() != t.device() ||
              (bucket_bytes > 0 && bytes_in + b > bucket_bytes);
    }
    if (fresh) {
      groups.push_back({{}, 0});
      bytes_in = 0;
    }
    groups.back().first.push_back(static_cast<int>(i));
    groups.back().second += t.numel();
    bytes_in += b;
  }
  for (size_t k = 0; k < groups.size(); k++) {
    const auto &first = ts[groups[k].first.front()];
    int64_t n = groups[k].second;
    if (k >= g.buckets.size()) g.buckets.emplace_back();
    auto &buf = g.buckets[k];
    if (!buf.defined() || buf.numel() != n || buf.scalar_type() != first.scalar_type() ||
        buf.device() != first.device())
      buf = at::empty({n}, first.options().memory_format(at::MemoryFormat::Contiguous));
    out.push_back({buf, groups[k].first});
  }
  return out;
}

void copy_in(Bucket &b, const std::vector<at::Tensor> &ts) {
  int64_t off = 0;
  for (int i : b.members) {
    const auto &t = ts[i];
    b.flat.narrow(0, off, t.numel()).view(t.sizes()).copy_(t);
    off += t.numel();
  }
}

void copy_out(Bucket &b, std::vector<at::Tensor> &ts) {
  int64_t off = 0;
  for (int i : b.members) {
    auto &t = ts[i];
    t.copy_(b.flat.narrow(0, off, t.numel()).view(t.sizes()));
    off += t.numel();
  }
}

// The tensors of a call, checked before anything is sent: a wrong device or dtype is the caller's
// mistake and must not break the group the way a failed collective does.
std::vector<at::Tensor> tensors(const Group &g, const hdge_tensor *hs, int n) {
  std::vector<at::Tensor> ts;
  ts.reserve(n);
  for (int i = 0; i < n; i++) {
    if (hs[i] == nullptr) throw std::invalid_argument("tensor " + std::to_string(i) + " is NULL");
    ts.push_back(hdge::T(hs[i]));
    const auto &t = ts.back();
    if (!t.defined()) throw std::invalid_argument("tensor " + std::to_string(i) + " is undefined");
    bool cuda = t.device().is_cuda();
    if (g.backend == HDGE_DIST_GLOO && !t.device().is_cpu())
      throw std::invalid_argument("tensor " + std::to_string(i) + " is on " + t.device().str() +
                                  "; the Gloo group takes CPU tensors");
    if (g.backend == HDGE_DIST_NCCL && !cuda)
      throw std::invalid_argument("tensor " + std::to_string(i) + " is on " + t.device().str() +
                                  "; the NCCL group takes CUDA tensors");
    if (t.scalar_type() == at::kBool)
      throw std::invalid_argument("tensor " + std::to_string(i) + " is bool; collectives take numbers");
  }
  return ts;
}

}  // namespace
}  // namespace hdge::dist

using hdge::dist::Group;

struct hdge_dist_group_s {
  Group g;
};

extern "C" {

int hdge_dist_has_backend(int backend) {
  if (backend == HDGE_DIST_GLOO) return 1;
  if (backend == HDGE_DIST_NCCL) return hdge::dist::have_nccl() ? 1 : 0;
  return 0;
}

hdge_error *hdge_dist_init(const hdge_dist_options *o, hdge_dist_group *out) {
  *out = nullptr;
  hdge_dist_group_s *h = nullptr;
  HDGE_TRY
  if (o->world_size < 1) throw std::invalid_argument("world size " + std::to_string(o->world_size) + " < 1");
  if (o->rank < 0 || o->rank >= o->world_size)
    throw std::invalid_argument("rank " + std::to_string(o->rank) + " outside [0, " +
                                std::to_string(o->world_size) + ")");
  if (o->port <= 0 || o->port > 65535) throw std::invalid_argument("port " + std::to_string(o->port) + " outside 1..65535");
  if (o->backend != HDGE_DIST_GLOO && o->backend != HDGE_DIST_NCCL)
    throw std::invalid_argument("unknown backend " + std::to_string(o->backend));
  h = new hdge_dist_group_s();
  Group &g = h->g;
  g.rank = o->rank;
  g.world = o->world_size;
  g.backend = o->backend;
  g.host = o->master_addr ? o->master_addr : "";
  g.port = o->port;
  if (o->connect_timeout_ms > 0) g.connect_timeout = milliseconds(o->connect_timeout_ms);
  if (o->op_timeout_ms > 0) g.op_timeout = milliseconds(o->op_timeout_ms);
  if (o->heartbeat_ms > 0) g.heartbeat = milliseconds(o->heartbeat_ms);
  if (o->dead_after_ms > 0) g.dead_after = milliseconds(o->dead_after_ms);
  std::string where = g.host + ":" + std::to_string(g.port);
  try {
    g.store = hdge::dist::connect_store(g.host, g.port, g.rank == 0, g.world, g.connect_timeout);
  } catch (const std::exception &e) {
    std::string m = e.what();
    if (auto p = m.find("Exception raised from"); p != std::string::npos) m.resize(p);
    if (g.rank == 0) throw std::runtime_error("rank 0 cannot serve the store on " + where + ": " + m);
    throw std::runtime_error("rank " + std::to_string(g.rank) + " cannot reach the store on " + where +
                             " within " + std::to_string(g.connect_timeout.count()) + " ms: " + m);
  }
  // Every rank must agree on the world size, or the process group would wait for ranks that
  // never come (or never complete).
  if (g.rank == 0) g.store->set("hdge/world", hdge::dist::bytes(std::to_string(g.world)));
  auto w = g.store->get("hdge/world");
  int world0 = std::stoi(std::string(w.begin(), w.end()));
  if (world0 != g.world)
    throw std::runtime_error("rank " + std::to_string(g.rank) + " has world size " + std::to_string(g.world) +
                             " but rank 0 has " + std::to_string(world0));
  if (g.store->check({hdge::dist::joined_key(g.rank)}))
    throw std::runtime_error("rank " + std::to_string(g.rank) + " joined twice (two processes with the same RANK?)");
  g.store->set(hdge::dist::joined_key(g.rank), hdge::dist::bytes("1"));
  g.store->add(hdge::dist::hb_key(g.rank), 1);
  auto pgstore = c10::make_intrusive<c10d::PrefixStore>("pg", g.store);
  try {
    if (g.backend == HDGE_DIST_GLOO)
      g.pg = hdge::dist::make_gloo(pgstore, g.rank, g.world, g.op_timeout, o->gloo_iface ? o->gloo_iface : "",
                                   o->gloo_host ? o->gloo_host : "");
    else
      g.pg = hdge::dist::make_nccl(pgstore, g.rank, g.world, g.op_timeout, o->cuda_device);
  } catch (const std::exception &e) {
    std::vector<int> missing;
    try {
      for (int r = 0; r < g.world; r++)
        if (!g.store->check({hdge::dist::joined_key(r)})) missing.push_back(r);
    } catch (...) {
    }
    std::string m = e.what();
    if (auto p = m.find("Exception raised from"); p != std::string::npos) m.resize(p);
    if (!missing.empty())
      throw std::runtime_error("rank " + hdge::dist::join_ranks(missing) + " did not join on " + where + ": " + m);
    throw std::runtime_error("creating the process group: " + m);
  }
  g.last_value.assign(g.world, -1);
  g.last_change.assign(g.world, Clock::now());
  auto hs = hdge::dist::connect_store(g.host, g.port, false, g.world, g.connect_timeout);
  g.hb = std::thread([&g, hs] { g.heartbeat_loop(hs); });
  *out = h;
  h = nullptr;
  return nullptr;
  }
  catch (const c10::Error &e) {
    delete h;
    return hdge::make_error("dist_init", e.what_without_backtrace());
  }
  catch (const std::exception &e) {
    delete h;
    return hdge::make_error("dist_init", e.what());
  }
  catch (...) {
    delete h;
    return hdge::make_error("dist_init", "unknown C++ exception");
  }
}

int hdge_dist_rank(hdge_dist_group h) { return h->g.rank; }
int hdge_dist_world_size(hdge_dist_group h) { return h->g.world; }

hdge_error *hdge_dist_allreduce(hdge_dist_group h, const hdge_tensor *hs, int n, int op, int64_t bucket_bytes,
                                int64_t timeout_ms, int64_t *nbuckets) {
  HDGE_TRY
  Group &g = h->g;
  g.check_healthy("all_reduce");
  if (op != HDGE_DIST_SUM && op != HDGE_DIST_MEAN) throw std::invalid_argument("unknown reduce op " + std::to_string(op));
  at::NoGradGuard no_grad;
  auto ts = hdge::dist::tensors(g, hs, n);
  auto bs = hdge::dist::plan(g, ts, bucket_bytes);
  std::vector<c10::intrusive_ptr<c10d::Work>> ws;
  c10d::AllreduceOptions ro;
  ro.reduceOp = c10d::ReduceOp::SUM;
  for (auto &b : bs) {
    hdge::dist::copy_in(b, ts);
    // Dividing before the sum, as DDP does, keeps large gradients from overflowing in low precision.
    if (op == HDGE_DIST_MEAN) b.flat.div_(g.world);
    std::vector<at::Tensor> one{b.flat};
    ws.push_back(g.pg->allreduce(one, ro));
  }
  g.wait_all(ws, "all_reduce", g.timeout_or_default(timeout_ms));
  for (auto &b : bs) hdge::dist::copy_out(b, ts);
  if (nbuckets) *nbuckets = static_cast<int64_t>(bs.size());
  HDGE_CATCH("all_reduce")
}

hdge_error *hdge_dist_allgather(hdge_dist_group h, hdge_tensor t, int64_t timeout_ms, hdge_tensor *out) {
  *out = nullptr;
  HDGE_TRY
  Group &g = h->g;
  g.check_healthy("all_gather");
  at::NoGradGuard no_grad;
  at::Tensor in = hdge::dist::tensors(g, &t, 1)[0].detach().contiguous();
  if (in.dim() == 0) in = in.reshape({1});
  auto sizes = in.sizes().vec();
  sizes[0] *= g.world;
  at::Tensor res = at::empty(sizes, in.options().memory_format(at::MemoryFormat::Contiguous));
  std::vector<std::vector<at::Tensor>> outs(1);
  for (int r = 0; r < g.world; r++) outs[0].push_back(res.narrow(0, r * in.size(0), in.size(0)));
  std::vector<at::Tensor> ins{in};
  std::vector<c10::intrusive_ptr<c10d::Work>> ws{g.pg->allgather(outs, ins)};
  g.wait_all(ws, "all_gather", g.timeout_or_default(timeout_ms));
  // Gloo writes into its own flat buffer and copies into the outputs; views of res get the data.
  *out = hdge::wrap(res);
  HDGE_CATCH("all_gather")
}

hdge_error *hdge_dist_broadcast(hdge_dist_group h, const hdge_tensor *hs, int n, int root, int64_t bucket_bytes,
                                int64_t timeout_ms) {
  HDGE_TRY
  Group &g = h->g;
  g.check_healthy("broadcast");
  if (root < 0 || root >= g.world) throw std::invalid_argument("root " + std::to_string(root) + " is not a rank");
  at::NoGradGuard no_grad;
  auto ts = hdge::dist::tensors(g, hs, n);
  auto bs = hdge::dist::plan(g, ts, bucket_bytes);
  std::vector<c10::intrusive_ptr<c10d::Work>> ws;
  c10d::BroadcastOptions bo;
  bo.rootRank = root;
  for (auto &b : bs) {
    if (g.rank == root) hdge::dist::copy_in(b, ts);
    std::vector<at::Tensor> one{b.flat};
    ws.push_back(g.pg->broadcast(one, bo));
  }
  g.wait_all(ws, "broadcast", g.timeout_or_default(timeout_ms));
  if (g.rank != root)
    for (auto &b : bs) hdge::dist::copy_out(b, ts);
  HDGE_CATCH("broadcast")
}

hdge_error *hdge_dist_barrier(hdge_dist_group h, int64_t timeout_ms) {
  HDGE_TRY
  Group &g = h->g;
  g.check_healthy("barrier");
  std::vector<c10::intrusive_ptr<c10d::Work>> ws{g.pg->barrier(c10d::BarrierOptions())};
  g.wait_all(ws, "barrier", g.timeout_or_default(timeout_ms));
  HDGE_CATCH("barrier")
}

int hdge_dist_lost(hdge_dist_group h, int *out, int cap) {
  Group &g = h->g;
  std::lock_guard<std::mutex> lk(g.mu);
  for (int i = 0; i < cap && i < static_cast<int>(g.lost.size()); i++) out[i] = g.lost[i];
  return static_cast<int>(g.lost.size());
}

void hdge_dist_close(hdge_dist_group h) {
  if (h == nullptr) return;
  Group &g = h->g;
  bool healthy;
  {
    std::lock_guard<std::mutex> lk(g.mu);
    g.stopping = true;
    healthy = g.broken.empty();
  }
  g.cv.notify_all();
  if (g.hb.joinable()) g.hb.join();
  if (!healthy) {
    // Gloo's threads may still be blocked on the dead peer until its timeout, and the
    // process group's destructor would join them: leave it to the process's exit.
    try {
      g.store->set(hdge::dist::closed_key(g.rank), hdge::dist::bytes("1"));
    } catch (...) {
    }
    (void)g.pg.release();
    (void)g.store.release();
    return;
  }
  try {
    g.store->set(hdge::dist::closed_key(g.rank), hdge::dist::bytes("1"));
    if (g.rank == 0) {
      // Peers' heartbeat threads stop before they say closed; only then may the store go.
      std::vector<std::string> keys;
      for (int r = 1; r < g.world; r++) keys.push_back(hdge::dist::closed_key(r));
      if (!keys.empty()) g.store->wait(keys, g.connect_timeout);
    }
  } catch (...) {
  }
  g.pg.reset();
  g.store.reset();
  delete h;
}

}  // extern "C"
