// Tensor maths, views and conversions. Each function applies the caller's grad mode for the
// duration of the call only.
#include "hdge_internal.hpp"

#include <numeric>
#include <vector>

using hdge::opt;
using hdge::T;
using hdge::wrap;

namespace {

const char *const unary_names[HDGE_UNARY_COUNT] = {"neg",  "abs",  "exp",     "log",        "log1p",
                                                   "sqrt", "sign", "square",  "relu",       "sigmoid",
                                                   "tanh", "contiguous", "clone", "detach",
                                                   "channels_last"};
const char *const binary_names[HDGE_BINARY_COUNT] = {"add",     "sub",     "mul", "div",
                                                     "minimum", "maximum", "eq",  "matmul"};
const char *const scalar_names[HDGE_SCALAR_COUNT] = {"add_scalar", "sub_scalar", "mul_scalar",
                                                     "div_scalar", "pow",        "leaky_relu"};
const char *const reduce_names[HDGE_REDUCE_COUNT] = {"sum", "mean", "logsumexp"};

const char *name_of(const char *const *names, int n, int op) { return op >= 0 && op < n ? names[op] : "unknown_op"; }

std::vector<int64_t> all_dims(const at::Tensor &t) {
  std::vector<int64_t> d(static_cast<size_t>(t.dim()));
  std::iota(d.begin(), d.end(), 0);
  return d;
}

std::vector<at::Tensor> tensor_list(const hdge_tensor *ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; i++) v.push_back(T(ts[i]));
  return v;
}

// t converted to the dtype code (differentiably), or t itself for -1 or a tensor already of it.
at::Tensor as_dtype(const at::Tensor &t, int dtype) {
  if (dtype < 0) return t;
  at::ScalarType st = hdge::scalar_type(dtype);
  return t.scalar_type() == st ? t : t.to(st);
}

c10::optional<at::Tensor> as_dtype(const c10::optional<at::Tensor> &t, int dtype) {
  if (!t.has_value()) return t;
  return as_dtype(*t, dtype);
}

}  // namespace

extern "C" {

hdge_error *hdge_unary(int op, hdge_tensor a, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  const at::Tensor &x = T(a);
  at::Tensor r;
  switch (op) {
    case HDGE_NEG: r = at::neg(x); break;
    case HDGE_ABS: r = at::abs(x); break;
    case HDGE_EXP: r = at::exp(x); break;
    case HDGE_LOG: r = at::log(x); break;
    case HDGE_LOG1P: r = at::log1p(x); break;
    case HDGE_SQRT: r = at::sqrt(x); break;
    case HDGE_SIGN: r = at::sign(x); break;
    case HDGE_SQUARE: r = at::square(x); break;
    case HDGE_RELU: r = at::relu(x); break;
    case HDGE_SIGMOID: r = at::sigmoid(x); break;
    case HDGE_TANH: r = at::tanh(x); break;
    case HDGE_CONTIGUOUS: r = x.contiguous(); break;
    case HDGE_CLONE: r = x.clone(); break;
    case HDGE_DETACH: r = x.detach(); break;
    case HDGE_CHANNELS_LAST: r = x.contiguous(at::MemoryFormat::ChannelsLast); break;
    default: return hdge::make_error("unary", ("unknown op code " + std::to_string(op)).c_str());
  }
  *out = wrap(std::move(r));
  HDGE_CATCH(name_of(unary_names, HDGE_UNARY_COUNT, op))
}

hdge_error *hdge_binary(int op, hdge_tensor a, hdge_tensor b, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  const at::Tensor &x = T(a);
  const at::Tensor &y = T(b);
  at::Tensor r;
  switch (op) {
    case HDGE_ADD: r = at::add(x, y); break;
    case HDGE_SUB: r = at::sub(x, y); break;
    case HDGE_MUL: r = at::mul(x, y); break;
    case HDGE_DIV: r = at::div(x, y); break;
    case HDGE_MINIMUM: r = at::minimum(x, y); break;
    case HDGE_MAXIMUM: r = at::maximum(x, y); break;
    case HDGE_EQ: r = at::eq(x, y); break;
    case HDGE_MATMUL: r = at::matmul(x, y); break;
    default: return hdge::make_error("binary", ("unknown op code " + std::to_string(op)).c_str());
  }
  *out = wrap(std::move(r));
  HDGE_CATCH(name_of(binary_names, HDGE_BINARY_COUNT, op))
}

hdge_error *hdge_scalar(int op, hdge_tensor a, double v, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  const at::Tensor &x = T(a);
  at::Scalar s = hdge::scalar_for(x, v);
  at::Tensor r;
  switch (op) {
    case HDGE_ADD_SCALAR: r = at::add(x, s); break;
    case HDGE_SUB_SCALAR: r = at::sub(x, s); break;
    case HDGE_MUL_SCALAR: r = at::mul(x, s); break;
    case HDGE_DIV_SCALAR: r = at::div(x, s); break;
    case HDGE_POW_SCALAR: r = at::pow(x, s); break;
    case HDGE_LEAKY_RELU: r = at::leaky_relu(x, at::Scalar(v)); break;
    default: return hdge::make_error("scalar", ("unknown op code " + std::to_string(op)).c_str());
  }
  *out = wrap(std::move(r));
  HDGE_CATCH(name_of(scalar_names, HDGE_SCALAR_COUNT, op))
}

hdge_error *hdge_reduce(int op, hdge_tensor a, const int64_t *dims, int ndims, int all, int keep, int grad,
                        hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  const at::Tensor &x = T(a);
  std::vector<int64_t> d = all ? all_dims(x) : std::vector<int64_t>(dims, dims + ndims);
  at::Tensor r;
  switch (op) {
    case HDGE_SUM: r = (all && !keep) ? at::sum(x) : at::sum(x, d, keep != 0); break;
    case HDGE_MEAN: r = (all && !keep) ? at::mean(x) : at::mean(x, d, keep != 0); break;
    case HDGE_LOGSUMEXP: r = at::logsumexp(x, d, keep != 0); break;
    default: return hdge::make_error("reduce", ("unknown op code " + std::to_string(op)).c_str());
  }
  *out = wrap(std::move(r));
  HDGE_CATCH(name_of(reduce_names, HDGE_REDUCE_COUNT, op))
}

hdge_error *hdge_norm(hdge_tensor a, double p, const int64_t *dims, int ndims, int all, int keep, int grad,
                      hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  const at::Tensor &x = T(a);
  if (all && !keep) {
    *out = wrap(at::norm(x, at::Scalar(p)));
  } else {
    std::vector<int64_t> d = all ? all_dims(x) : std::vector<int64_t>(dims, dims + ndims);
    *out = wrap(at::norm(x, at::Scalar(p), d, keep != 0));
  }
  HDGE_CATCH("norm")
}

// ---- shape and conversion ----

hdge_error *hdge_to(hdge_tensor t, int dev_kind, int dev_index, int dtype, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  const at::Tensor &x = T(t);
  at::Device dev = dev_kind < 0 ? x.device() : hdge::device(dev_kind, dev_index);
  at::ScalarType st = dtype < 0 ? x.scalar_type() : hdge::scalar_type(dtype);
  *out = wrap(x.to(dev, st));
  HDGE_CATCH(dev_kind < 0 ? "to_dtype" : "to_device")
}

hdge_error *hdge_reshape(hdge_tensor t, const int64_t *shape, int ndim, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::reshape(T(t), at::IntArrayRef(shape, ndim)));
  HDGE_CATCH("reshape")
}

hdge_error *hdge_transpose(hdge_tensor t, int64_t d0, int64_t d1, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::transpose(T(t), d0, d1));
  HDGE_CATCH("transpose")
}

hdge_error *hdge_permute(hdge_tensor t, const int64_t *dims, int ndims, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::permute(T(t), at::IntArrayRef(dims, ndims)));
  HDGE_CATCH("permute")
}

hdge_error *hdge_narrow(hdge_tensor t, int64_t dim, int64_t start, int64_t length, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::narrow(T(t), dim, start, length));
  HDGE_CATCH("narrow")
}

hdge_error *hdge_squeeze(hdge_tensor t, int64_t dim, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::squeeze(T(t), dim));
  HDGE_CATCH("squeeze")
}

hdge_error *hdge_unsqueeze(hdge_tensor t, int64_t dim, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::unsqueeze(T(t), dim));
  HDGE_CATCH("unsqueeze")
}

hdge_error *hdge_flatten(hdge_tensor t, int64_t start, int64_t end, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::flatten(T(t), start, end));
  HDGE_CATCH("flatten")
}

hdge_error *hdge_flip(hdge_tensor t, const int64_t *dims, int ndims, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::flip(T(t), at::IntArrayRef(dims, ndims)));
  HDGE_CATCH("flip")
}

// ---- in place ----

hdge_error *hdge_copy_(hdge_tensor dst, hdge_tensor src) {
  HDGE_TRY
  at::NoGradGuard no_grad;
  T(dst).copy_(T(src));
  HDGE_CATCH("copy_")
}

hdge_error *hdge_zero_(hdge_tensor t) {
  HDGE_TRY
  at::NoGradGuard no_grad;
  T(t).zero_();
  HDGE_CATCH("zero_")
}

hdge_error *hdge_fill_(hdge_tensor t, double v) {
  HDGE_TRY
  at::NoGradGuard no_grad;
  T(t).fill_(hdge::scalar_for(T(t), v));
  HDGE_CATCH("fill_")
}

// ---- neural-network maths ----

hdge_error *hdge_conv2d(hdge_tensor x, hdge_tensor w, hdge_tensor b, int64_t stride_h, int64_t stride_w,
                        int64_t pad_h, int64_t pad_w, int64_t dilation, int64_t groups, int dtype, int grad,
                        hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::conv2d(as_dtype(T(x), dtype), as_dtype(T(w), dtype), as_dtype(opt(b), dtype), {stride_h, stride_w},
                         {pad_h, pad_w}, {dilation, dilation}, groups));
  HDGE_CATCH("conv2d")
}

hdge_error *hdge_linear(hdge_tensor x, hdge_tensor w, hdge_tensor b, int dtype, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::linear(as_dtype(T(x), dtype), as_dtype(T(w), dtype), as_dtype(opt(b), dtype)));
  HDGE_CATCH("linear")
}

hdge_error *hdge_batch_norm(hdge_tensor x, hdge_tensor w, hdge_tensor b, hdge_tensor run_mean, hdge_tensor run_var,
                            int train, double momentum, double eps, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  // cudnn_enabled=true is what torch.nn.functional.batch_norm passes by default.
  *out = wrap(at::batch_norm(T(x), opt(w), opt(b), opt(run_mean), opt(run_var), train != 0, momentum, eps, true));
  HDGE_CATCH("batch_norm")
}

hdge_error *hdge_dropout(hdge_tensor x, double p, int train, hdge_generator gen, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  const at::Tensor &in = T(x);
  if (train == 0 || p == 0) {
    *out = wrap(in);
  } else {
    if (gen == nullptr) throw std::invalid_argument("dropout in training mode needs a generator");
    // at::dropout's own CPU path (input * bernoulli(1-p) / (1-p)), with the caller's generator, so
    // the same generator state gives PyTorch's mask.
    at::Tensor noise = at::empty_like(in, at::MemoryFormat::Preserve).bernoulli_(1 - p, hdge::gen(gen));
    noise.div_(1 - p);
    *out = wrap(in * noise);
  }
  HDGE_CATCH("dropout")
}

hdge_error *hdge_avg_pool2d(hdge_tensor x, int64_t kernel, int64_t stride, int64_t padding, int count_include_pad,
                            int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  if (stride <= 0) stride = kernel;  // PyTorch's stride=None
  *out = wrap(at::avg_pool2d(T(x), {kernel, kernel}, {stride, stride}, {padding, padding}, false,
                             count_include_pad != 0));
  HDGE_CATCH("avg_pool2d")
}

hdge_error *hdge_max_pool2d(hdge_tensor x, int64_t kernel, int64_t stride, int64_t padding, int grad,
                            hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  if (stride <= 0) stride = kernel;
  *out = wrap(at::max_pool2d(T(x), {kernel, kernel}, {stride, stride}, {padding, padding}));
  HDGE_CATCH("max_pool2d")
}

hdge_error *hdge_adaptive_avg_pool2d(hdge_tensor x, int64_t oh, int64_t ow, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::adaptive_avg_pool2d(T(x), {oh, ow}));
  HDGE_CATCH("adaptive_avg_pool2d")
}

hdge_error *hdge_upsample_bilinear2d(hdge_tensor x, int64_t oh, int64_t ow, int align_corners, int grad,
                                     hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::upsample_bilinear2d(T(x), {oh, ow}, align_corners != 0));
  HDGE_CATCH("upsample_bilinear2d")
}

hdge_error *hdge_clamp(hdge_tensor a, int has_lo, double lo, int has_hi, double hi, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  const at::Tensor &x = T(a);
  c10::optional<at::Scalar> l, h;
  if (has_lo) l = hdge::scalar_for(x, lo);
  if (has_hi) h = hdge::scalar_for(x, hi);
  *out = wrap(at::clamp(x, l, h));
  HDGE_CATCH("clamp")
}

hdge_error *hdge_where(hdge_tensor cond, hdge_tensor a, hdge_tensor b, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::where(T(cond), T(a), T(b)));
  HDGE_CATCH("where")
}

hdge_error *hdge_max_dim(hdge_tensor a, int64_t dim, int keep, int grad, hdge_tensor *values, hdge_tensor *indices) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  auto r = at::max(T(a), dim, keep != 0);
  *values = wrap(std::move(std::get<0>(r)));
  *indices = wrap(std::move(std::get<1>(r)));
  HDGE_CATCH("max")
}

hdge_error *hdge_argmax(hdge_tensor a, int64_t dim, int keep, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::argmax(T(a), dim, keep != 0));
  HDGE_CATCH("argmax")
}

hdge_error *hdge_log_softmax(hdge_tensor a, int64_t dim, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::log_softmax(T(a), dim));
  HDGE_CATCH("log_softmax")
}

hdge_error *hdge_softmax(hdge_tensor a, int64_t dim, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::softmax(T(a), dim));
  HDGE_CATCH("softmax")
}

hdge_error *hdge_cross_entropy(hdge_tensor logits, hdge_tensor target, double label_smoothing, int reduction,
                               int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::cross_entropy_loss(T(logits), T(target), c10::nullopt, reduction, -100, label_smoothing));
  HDGE_CATCH("cross_entropy")
}

hdge_error *hdge_normalize(hdge_tensor a, double p, int64_t dim, double eps, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  // Written as torch.nn.functional.normalize is, so values and gradients match it.
  const at::Tensor &x = T(a);
  at::Tensor denom = at::norm(x, at::Scalar(p), {dim}, true).clamp_min(eps).expand_as(x);
  *out = wrap(x / denom);
  HDGE_CATCH("normalize")
}

hdge_error *hdge_gather(hdge_tensor a, int64_t dim, hdge_tensor idx, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::gather(T(a), dim, T(idx)));
  HDGE_CATCH("gather")
}

hdge_error *hdge_index_select(hdge_tensor a, int64_t dim, hdge_tensor idx, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::index_select(T(a), dim, T(idx)));
  HDGE_CATCH("index_select")
}

hdge_error *hdge_cat(const hdge_tensor *ts, int n, int64_t dim, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::cat(tensor_list(ts, n), dim));
  HDGE_CATCH("cat")
}

hdge_error *hdge_stack(const hdge_tensor *ts, int n, int64_t dim, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::stack(tensor_list(ts, n), dim));
  HDGE_CATCH("stack")
}

hdge_error *hdge_einsum(const char *eq, int64_t eq_len, const hdge_tensor *ts, int n, int grad, hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  // A std::string converts to the equation parameter both where it is c10::string_view (1.x)
  // and where it is std::string_view.
  std::string e(eq, static_cast<size_t>(eq_len));
  *out = wrap(at::einsum(e, tensor_list(ts, n)));
  HDGE_CATCH("einsum")
}

hdge_error *hdge_reflect_pad2d(hdge_tensor x, int64_t left, int64_t right, int64_t top, int64_t bottom, int grad,
                               hdge_tensor *out) {
  HDGE_TRY
  at::AutoGradMode g(grad != 0);
  *out = wrap(at::reflection_pad2d(T(x), {left, right, top, bottom}));
  HDGE_CATCH("reflect_pad2d")
}

hdge_error *hdge_one_hot(hdge_tensor idx, int64_t num_classes, hdge_tensor *out) {
  HDGE_TRY
  *out = wrap(at::one_hot(T(idx), num_classes));
  HDGE_CATCH("one_hot")
}

}  // extern "C"
