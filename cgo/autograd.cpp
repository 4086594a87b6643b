// Autograd entry points and the fused optimizer steps.
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <vector>

#include "hdge_internal.hpp"

using hdge::T;
using hdge::wrap;

extern "C" {

hdge_error *hdge_backward(hdge_tensor loss) {
  HDGE_TRY
  T(loss).backward();
  HDGE_CATCH("backward")
}

hdge_error *hdge_grad(hdge_tensor t, hdge_tensor *out) {
  HDGE_TRY
  const at::Tensor &g = T(t).grad();
  *out = g.defined() ? wrap(at::Tensor(g)) : nullptr;
  HDGE_CATCH("grad")
}

hdge_error *hdge_zero_grad(const hdge_tensor *ts, int n) {
  HDGE_TRY
  for (int i = 0; i < n; i++) {
    if (ts[i] == nullptr) continue;
    T(ts[i]).mutable_grad().reset();
  }
  HDGE_CATCH("zero_grad")
}

hdge_error *hdge_gradients(const hdge_tensor *outputs, int nout, const hdge_tensor *inputs, int nin,
                           int create_graph, hdge_tensor *outs) {
  HDGE_TRY
  // create_graph needs grad mode on while the backward graph is built.
  at::AutoGradMode g(true);
  torch::autograd::variable_list outv, inv, gov;
  outv.reserve(nout);
  gov.reserve(nout);
  for (int i = 0; i < nout; i++) {
    outv.push_back(T(outputs[i]));
    gov.push_back(at::ones_like(T(outputs[i])));
  }
  inv.reserve(nin);
  for (int i = 0; i < nin; i++) inv.push_back(T(inputs[i]));
  auto res = torch::autograd::grad(outv, inv, gov, c10::nullopt, create_graph != 0, false);
  for (int i = 0; i < nin; i++) outs[i] = nullptr;
  for (int i = 0; i < nin && i < static_cast<int>(res.size()); i++)
    outs[i] = res[i].defined() ? wrap(std::move(res[i])) : nullptr;
  HDGE_CATCH("gradients")
}

hdge_error *hdge_unscale_grads(const hdge_tensor *params, int n, double inv_scale, int *found_inf) {
  HDGE_TRY
  at::NoGradGuard no_grad;
  *found_inf = 0;
  at::Tensor bad;  // accumulated on the gradients' device so that only the final read synchronises
  for (int i = 0; i < n; i++) {
    at::Tensor g = T(params[i]).grad();
    if (!g.defined()) continue;
    g.mul_(inv_scale);
    at::Tensor b = at::logical_not(at::isfinite(g)).any();
    bad = bad.defined() ? at::logical_or(bad, b) : b;
  }
  if (bad.defined()) *found_inf = bad.item<bool>() ? 1 : 0;
  HDGE_CATCH("unscale_grads")
}

// Mirrors torch.optim.Adam's single-tensor path (amsgrad=False, maximize=False) of the libtorch
// version this library is built against.
hdge_error *hdge_adam_step(const hdge_tensor *params, const hdge_tensor *exp_avg, const hdge_tensor *exp_avg_sq,
                           int64_t *steps, int n, double lr, double beta1, double beta2, double eps,
                           double weight_decay) {
  HDGE_TRY
  at::NoGradGuard no_grad;
  for (int i = 0; i < n; i++) {
    at::Tensor &p = T(params[i]);
    const at::Tensor &g = p.grad();
    if (!g.defined()) continue;
    at::Tensor &m = T(exp_avg[i]);
    at::Tensor &v = T(exp_avg_sq[i]);
    steps[i]++;
    double step = static_cast<double>(steps[i]);
    at::Tensor grad = weight_decay != 0 ? g.add(p, weight_decay) : g;
#if TORCH_VERSION_MAJOR >= 2
    m.lerp_(grad, 1 - beta1);
#else
    m.mul_(beta1).add_(grad, 1 - beta1);
#endif
    v.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
    double bias_correction1 = 1 - std::pow(beta1, step);
    double bias_correction2 = 1 - std::pow(beta2, step);
    double step_size = lr / bias_correction1;
    double bias_correction2_sqrt = std::sqrt(bias_correction2);
    at::Tensor denom = (v.sqrt() / bias_correction2_sqrt).add_(eps);
    p.addcdiv_(m, denom, -step_size);
  }
  HDGE_CATCH("adam_step")
}

// Mirrors torch.optim.SGD's single-tensor path (maximize=False).
hdge_error *hdge_sgd_step(const hdge_tensor *params, const hdge_tensor *momentum_buf, uint8_t *has_buf, int n,
                          double lr, double momentum, double dampening, double weight_decay, int nesterov) {
  HDGE_TRY
  at::NoGradGuard no_grad;
  for (int i = 0; i < n; i++) {
    at::Tensor &p = T(params[i]);
    const at::Tensor &g = p.grad();
    if (!g.defined()) continue;
    at::Tensor d_p = weight_decay != 0 ? g.add(p, weight_decay) : g;
    if (momentum != 0) {
      at::Tensor &buf = T(momentum_buf[i]);
      if (!has_buf[i]) {
        buf.copy_(d_p);
        has_buf[i] = 1;
      } else {
        buf.mul_(momentum).add_(d_p, 1 - dampening);
      }
      d_p = nesterov ? d_p.add(buf, momentum) : buf;
    }
    p.add_(d_p, -lr);
  }
  HDGE_CATCH("sgd_step")
}

}  // extern "C"
