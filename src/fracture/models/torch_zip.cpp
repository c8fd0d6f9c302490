#include "fracture/models/torch_zip.h"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <variant>

namespace fracture::models {
namespace {

struct Obj;
using Ref = std::shared_ptr<Obj>;
struct Global {
  std::string module, name;
};
struct Mark {};
using Tuple = std::vector<Ref>;
using Dict = std::vector<std::pair<Ref, Ref>>;  // ordered, as in the file
struct Obj {
  std::variant<std::monostate, bool, int64_t, double, std::string, Tuple, Dict, torch::Tensor, Global, Mark> v;
};


torch::ScalarType storage_dtype(const std::string& name, const std::string& origin) {
  static const std::map<std::string, torch::ScalarType> types = {
      {"FloatStorage", torch::kFloat32}, {"DoubleStorage", torch::kFloat64}, {"HalfStorage", torch::kFloat16},
      {"BFloat16Storage", torch::kBFloat16}, {"LongStorage", torch::kInt64}, {"IntStorage", torch::kInt32},
      {"ShortStorage", torch::kInt16}, {"CharStorage", torch::kInt8}, {"ByteStorage", torch::kUInt8},
      {"BoolStorage", torch::kBool}};
  auto it = types.find(name);
  if (it == types.end()) throw std::runtime_error(origin + ": unsupported storage type torch." + name);
  return it->second;
}

class Unpickler {
 public:
  Unpickler(const RecordReader& read_record, std::string origin) : read_record_(read_record), origin_(std::move(origin)) {}
  // A crafted pickle can put a list inside itself (APPEND of a memo'd list),
  // a cycle that shared_ptr never frees (found by fuzz_pickle as a leak): every
  // object made is emptied here, which breaks any cycle. Results are copied
  // out (tensors, names) before the Unpickler goes.
  ~Unpickler() {
    for (auto& o : made_) o->v = std::monostate{};
  }
  Unpickler(const Unpickler&) = delete;
  Unpickler& operator=(const Unpickler&) = delete;

  Ref run(const char* data, size_t size) {
    p_ = data;
    end_ = data + size;
    while (p_ < end_) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;                         // PROTO
        case 0x95: take(8); break;                        // FRAME
        case '.': return pop();                           // STOP
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case ')': push(make(Tuple{})); break;             // EMPTY_TUPLE
        case '}': push(make(Dict{})); break;              // EMPTY_DICT
        case ']': push(make(Tuple{})); break;             // EMPTY_LIST (a list reads as a tuple)
        case 'N': push(make(std::monostate{})); break;
        case 0x88: push(make(true)); break;
        case 0x89: push(make(false)); break;
        case 'J': push(make(static_cast<int64_t>(static_cast<int32_t>(le(4))))); break;  // BININT
        case 'K': push(make(static_cast<int64_t>(le(1)))); break;                        // BININT1
        case 'M': push(make(static_cast<int64_t>(le(2)))); break;                        // BININT2
        case 0x8a: {                                                                     // LONG1
          const size_t n = le(1);
          int64_t v = static_cast<int64_t>(le(n));
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v -= int64_t(1) << (8 * n);
          push(make(v));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | byte();
          double d;
          std::memcpy(&d, &bits, 8);
          push(make(d));
          break;
        }
        case 'X': push(make(str(le(4)))); break;       // BINUNICODE
        case 0x8c: push(make(str(le(1)))); break;      // SHORT_BINUNICODE
        case 'T': push(make(str(le(4)))); break;       // BINSTRING
        case 'U': push(make(str(le(1)))); break;       // SHORT_BINSTRING
        case 'q': memo_[le(1)] = top(); break;         // BINPUT
        case 'r': memo_[le(4)] = top(); break;         // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;  // MEMOIZE
        case 'h': push(memo(le(1))); break;            // BINGET
        case 'j': push(memo(le(4))); break;            // LONG_BINGET
        case 'c': {                                    // GLOBAL "module\nname\n"
          std::string module = line(), name = line();
          push(make(Global{module, name}));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Ref name = pop(), module = pop();
          push(make(Global{as<std::string>(module), as<std::string>(name)}));
          break;
        }
        case 't': push(make(pop_to_mark())); break;  // TUPLE
        case 0x85: push(make(Tuple{pop()})); break;  // TUPLE1
        case 0x86: { Ref b = pop(), a = pop(); push(make(Tuple{a, b})); break; }
        case 0x87: { Ref c = pop(), b = pop(), a = pop(); push(make(Tuple{a, b, c})); break; }
        case 'a': { Ref v = pop(); as<Tuple>(top()).push_back(v); break; }  // APPEND
        case 'e': {                                                          // APPENDS
          Tuple items = pop_to_mark();
          auto& list = as<Tuple>(top());
          list.insert(list.end(), items.begin(), items.end());
          break;
        }
        case 's': { Ref v = pop(), k = pop(); as<Dict>(top()).emplace_back(k, v); break; }  // SETITEM
        case 'u': {                                                                          // SETITEMS
          Tuple items = pop_to_mark();
          auto& dict = as<Dict>(top());
          for (size_t i = 0; i + 1 < items.size(); i += 2) dict.emplace_back(items[i], items[i + 1]);
          break;
        }
        case 'Q': push(persistent_load(pop())); break;  // BINPERSID
        case 'R': { Ref args = pop(), fn = pop(); push(reduce(as<Global>(fn), as<Tuple>(args))); break; }
        case 'b': pop(); break;  // BUILD: object state (an OrderedDict's _metadata) is not needed
        default:
          throw std::runtime_error(origin_ + ": unsupported pickle opcode 0x" + hex(op) +
                                   " (not a plain state dict?)");
      }
    }
    throw std::runtime_error(origin_ + ": pickle ended without STOP");
  }

 private:
  uint8_t byte() {
    if (p_ >= end_) throw std::runtime_error(origin_ + ": truncated pickle");
    return static_cast<uint8_t>(*p_++);
  }
  const char* take(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) throw std::runtime_error(origin_ + ": truncated pickle");
    const char* s = p_;
    p_ += n;
    return s;
  }
  uint64_t le(size_t n) {
    const char* s = take(n);
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = (v << 8) | static_cast<uint8_t>(s[i]);
    return v;
  }
  std::string str(size_t n) { return std::string(take(n), n); }
  std::string line() {
    std::string s;
    for (char c; (c = static_cast<char>(byte())) != '\n';) s += c;
    return s;
  }
  static std::string hex(uint8_t v) {
    const char* d = "0123456789abcdef";
    return {d[v >> 4], d[v & 15]};
  }
  Ref make(decltype(Obj::v) v) {
    made_.push_back(std::make_shared<Obj>(Obj{std::move(v)}));
    return made_.back();
  }
  void push(Ref r) {
    if (stack_.size() >= kMaxStack) throw std::runtime_error(origin_ + ": malformed pickle (stack too deep)");
    stack_.push_back(std::move(r));
  }
  Ref& top() {
    if (stack_.empty()) throw std::runtime_error(origin_ + ": malformed pickle (empty stack)");
    return stack_.back();
  }
  Ref pop() {
    Ref r = top();
    stack_.pop_back();
    return r;
  }
  Ref memo(uint64_t k) {
    auto it = memo_.find(k);
    if (it == memo_.end()) throw std::runtime_error(origin_ + ": malformed pickle (memo)");
    return it->second;
  }
  Tuple pop_to_mark() {
    if (marks_.empty()) throw std::runtime_error(origin_ + ": malformed pickle (mark)");
    const size_t m = marks_.back();
    marks_.pop_back();
    // Found by fuzz_pickle: values popped since the MARK leave the stack
    // shorter than the mark's position.
    if (m > stack_.size()) throw std::runtime_error(origin_ + ": malformed pickle (mark above the stack)");
    Tuple out(stack_.begin() + static_cast<long>(m), stack_.end());
    stack_.resize(m);
    return out;
  }
  template <typename T>
  T& as(const Ref& r) {
    if (auto* v = std::get_if<T>(&r->v)) return *v;
    throw std::runtime_error(origin_ + ": unexpected value in pickle (not a plain state dict?)");
  }
  std::vector<int64_t> ints(const Ref& r) {
    std::vector<int64_t> out;
    for (const auto& x : as<Tuple>(r)) out.push_back(as<int64_t>(x));
    return out;
  }
  // A pickle nests only a few levels; a deep stack or memo is a crafted file.
  static constexpr size_t kMaxStack = 1 << 20;

  // ('storage', torch.FloatStorage, key, location, numel) -> the raw storage as a 1-D tensor.
  Ref persistent_load(const Ref& pid) {
    const Tuple& t = as<Tuple>(pid);
    if (t.size() < 5 || as<std::string>(t[0]) != "storage") throw std::runtime_error(origin_ + ": unknown persistent id");
    const torch::ScalarType dtype = storage_dtype(as<Global>(t[1]).name, origin_);
    const std::string key = as<std::string>(t[2]);
    auto it = storages_.find(key);
    if (it == storages_.end()) {
      const std::string record = "data/" + key;
      const std::string bytes = read_record_(record);
      const size_t size = bytes.size();
      const size_t elem = c10::elementSize(dtype);
      const int64_t numel = as<int64_t>(t[4]);
      // The record must hold exactly the elements the pickle declares: a
      // record of another size is a damaged or crafted file.
      if (numel < 0 || size % elem != 0 || size / elem != static_cast<uint64_t>(numel))
        throw std::runtime_error(origin_ + ": storage " + record + " holds " + std::to_string(size) +
                                 " bytes, not the " + std::to_string(numel) + " x " + std::to_string(elem) +
                                 " the pickle declares");
      torch::Tensor s = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
      if (size > 0) std::memcpy(s.data_ptr(), bytes.data(), size);
      it = storages_.emplace(key, s).first;
    }
    return make(it->second);
  }

  // The view a tensor record asks for must lie inside its storage.
  void check_view(int64_t storage_numel, int64_t offset, const std::vector<int64_t>& sizes,
                  const std::vector<int64_t>& strides) {
    if (sizes.size() != strides.size() || sizes.size() > 8 || offset < 0)
      throw std::runtime_error(origin_ + ": malformed tensor record (sizes, strides or offset)");
    int64_t last = offset, numel = 1;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (sizes[i] < 0 || strides[i] < 0 || sizes[i] > (int64_t{1} << 40) || strides[i] > (int64_t{1} << 40))
        throw std::runtime_error(origin_ + ": malformed tensor record (negative or huge size or stride)");
      if (__builtin_mul_overflow(numel, sizes[i], &numel)) throw std::runtime_error(origin_ + ": tensor size overflows");
      if (sizes[i] > 0) last += (sizes[i] - 1) * strides[i];
    }
    if (numel > 0 && last >= storage_numel)
      throw std::runtime_error(origin_ + ": a tensor reaches past the end of its storage (" +
                               std::to_string(last + 1) + " > " + std::to_string(storage_numel) + " elements)");
  }

  Ref reduce(const Global& fn, Tuple& args) {
    const std::string f = fn.module + "." + fn.name;
    if (f == "collections.OrderedDict") return make(Dict{});
    if (f == "torch._utils._rebuild_tensor_v2" || f == "torch._utils._rebuild_tensor") {
      if (args.size() < 4) throw std::runtime_error(origin_ + ": malformed tensor record");
      const torch::Tensor& storage = as<torch::Tensor>(args[0]);
      const int64_t offset = as<int64_t>(args[1]);
      const auto sizes = ints(args[2]), strides = ints(args[3]);
      check_view(storage.numel(), offset, sizes, strides);
      return make(storage.as_strided(sizes, strides, offset).clone());
    }
    if (f == "torch._utils._rebuild_parameter") return args.at(0);
    throw std::runtime_error(origin_ + ": refuses to call " + f + " (only plain state dicts are read)");
  }

  const RecordReader& read_record_;
  std::string origin_;
  std::vector<Ref> made_;
  const char* p_ = nullptr;
  const char* end_ = nullptr;
  std::vector<Ref> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, Ref> memo_;
  std::map<std::string, torch::Tensor> storages_;
};

}  // namespace

namespace {

TensorMap state_dict_from(caffe2::serialize::PyTorchStreamReader& zip, const std::string& origin) {
  if (!zip.hasRecord("data.pkl")) throw std::runtime_error(origin + ": no data.pkl in the archive (not a torch.save file?)");
  auto [data, size] = zip.getRecord("data.pkl");
  const RecordReader read_record = [&](const std::string& name) {
    if (!zip.hasRecord(name)) throw std::runtime_error(origin + ": storage " + name + " is missing");
    auto [ptr, n] = zip.getRecord(name);
    return std::string(static_cast<const char*>(ptr.get()), n);
  };
  return parse_state_dict_pickle(std::string(static_cast<const char*>(data.get()), size), read_record, origin);
}

}  // namespace

TensorMap parse_state_dict_pickle(const std::string& pickle, const RecordReader& read_record, const std::string& origin) {
  Unpickler unpickler(read_record, origin);
  Ref root = unpickler.run(pickle.data(), pickle.size());
  auto* dict = std::get_if<Dict>(&root->v);
  // Training checkpoints often wrap the weights: {"state_dict": {...}, "epoch": ...}.
  if (dict)
    for (const auto& [k, v] : *dict)
      if (auto* name = std::get_if<std::string>(&k->v); name && (*name == "state_dict" || *name == "model"))
        if (auto* inner = std::get_if<Dict>(&v->v)) dict = inner;
  if (!dict) throw std::runtime_error(origin + ": holds no state dict (expected a dict of tensors)");
  TensorMap out;
  for (const auto& [k, v] : *dict) {
    auto* name = std::get_if<std::string>(&k->v);
    auto* tensor = std::get_if<torch::Tensor>(&v->v);
    if (name && tensor) out.emplace(*name, *tensor);
  }
  if (out.empty()) throw std::runtime_error(origin + ": the dict in this archive has no tensors");
  return out;
}

namespace {

// LibTorch's zip reader reports problems as c10::Error with a C++ backtrace;
// the user needs the file and the reason.
template <typename F>
TensorMap reading_zip(const std::string& origin, F&& read) {
  try {
    return read();
  } catch (const c10::Error& e) {
    throw std::runtime_error(origin + ": not a readable PyTorch zip archive (" + e.what_without_backtrace() + ")");
  }
}

}  // namespace

TensorMap read_torch_zip_state_dict(const std::string& path) {
  return reading_zip(path, [&] {
    caffe2::serialize::PyTorchStreamReader zip(path);
    return state_dict_from(zip, path);
  });
}

TensorMap parse_torch_zip_state_dict(const std::string& bytes, const std::string& origin) {
  return reading_zip(origin, [&] {
    std::istringstream in(bytes);
    caffe2::serialize::PyTorchStreamReader zip(&in);
    return state_dict_from(zip, origin);
  });
}

}  // namespace fracture::models
