// The ARM64 twin's ExecuTorch runner: cross-compiled by `edgeclip device setup arm64` against
// the runtime libraries of executorch's own aarch64 wheel, run under qemu-aarch64.
//
//   et_runner MODEL.pte INPUTS.bin BATCH MODE OUT.bin
//
// INPUTS.bin holds rows of the method's first input (its dtype, C order), BATCH rows a call.
// The first batch runs once (XNNPACK packs weights on the first call: part of loading). MODE
// "outputs" then runs every batch and writes the first output of each as float32 rows to
// OUT.bin; MODE k runs the first batch k more times and writes nothing, so that
// (instructions at k - instructions at 0) / k is one inference. One thread (the counting plugin
// is exact for one guest thread): XNNPACK's threadpool is sized to 1.
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor_ptr.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

// the wheel ships libexecutorch_threadpool.so without its header: the two calls used, as declared there
namespace executorch { namespace extension { namespace threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
  size_t get_thread_count() const;
};
ThreadPool* get_threadpool();
}}}  // namespace executorch::extension::threadpool

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::extension::make_tensor_ptr;
using executorch::runtime::EValue;

static int fail(const std::string& what) {
  std::fprintf(stderr, "et_runner: %s\n", what.c_str());
  return 2;
}

static size_t element_size(ScalarType t) {
  switch (t) {
    case ScalarType::Float: case ScalarType::Int: return 4;
    case ScalarType::Long: case ScalarType::Double: return 8;
    case ScalarType::Byte: case ScalarType::Char: case ScalarType::Bool: return 1;
    case ScalarType::Half: case ScalarType::Short: return 2;
    default: return 0;
  }
}

int main(int argc, char** argv) {
  if (argc != 6) return fail("usage: et_runner MODEL.pte INPUTS.bin BATCH MODE OUT.bin");
  const std::string model = argv[1], inputs = argv[2], mode = argv[4], out_path = argv[5];
  const long batch = std::atol(argv[3]);
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (!pool || !pool->_unsafe_reset_threadpool(1) || pool->get_thread_count() != 1)
    return fail("cannot size ExecuTorch's threadpool to one thread");

  Module module(model, Module::LoadMode::File);
  auto meta = module.method_meta("forward");
  if (!meta.ok()) return fail("cannot read the forward method of " + model);
  auto in_meta = meta->input_tensor_meta(0);
  if (!in_meta.ok()) return fail("the first input of forward is not a tensor");
  const ScalarType dtype = in_meta->scalar_type();
  const size_t esize = element_size(dtype);
  if (!esize) return fail("unsupported input dtype " + std::to_string(static_cast<int>(dtype)));
  std::vector<executorch::aten::SizesType> sizes(in_meta->sizes().begin(), in_meta->sizes().end());
  size_t per_call = esize;
  for (auto s : sizes) per_call *= static_cast<size_t>(s);
  if (sizes.empty() || sizes[0] != batch) return fail("BATCH does not match the method's first input dimension");

  std::ifstream f(inputs, std::ios::binary | std::ios::ate);
  if (!f) return fail("cannot open " + inputs);
  const size_t bytes = static_cast<size_t>(f.tellg());
  if (bytes == 0 || bytes % (per_call / batch)) return fail("INPUTS.bin is not a whole number of rows");
  std::vector<unsigned char> data(bytes);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(data.data()), bytes);
  const size_t rows = bytes / (per_call / batch);

  std::vector<unsigned char> call(per_call);
  auto run = [&](size_t row) -> executorch::runtime::Result<std::vector<EValue>> {
    // the last call is padded with copies of the last row, whose outputs are dropped
    for (long i = 0; i < batch; ++i) {
      size_t r = row + i < rows ? row + i : rows - 1;
      std::memcpy(call.data() + i * (per_call / batch), data.data() + r * (per_call / batch), per_call / batch);
    }
    auto t = make_tensor_ptr(sizes, call.data(), dtype);
    return module.forward({EValue(t)});
  };
  auto first = run(0);
  if (!first.ok()) return fail("forward failed with error " + std::to_string(static_cast<int>(first.error())));

  if (mode != "outputs") {
    const long k = std::atol(mode.c_str());
    for (long i = 0; i < k; ++i)
      if (!run(0).ok()) return fail("forward failed on a repeat");
    return 0;
  }
  std::ofstream out(out_path, std::ios::binary);
  for (size_t row = 0; row < rows; row += batch) {
    auto res = run(row);
    if (!res.ok()) return fail("forward failed at row " + std::to_string(row));
    const auto& t = (*res)[0].toTensor();
    if (t.scalar_type() != ScalarType::Float) return fail("the first output is not float32");
    const size_t per_row = t.numel() / batch;
    const size_t keep = (rows - row < static_cast<size_t>(batch) ? rows - row : batch) * per_row;
    out.write(reinterpret_cast<const char*>(t.const_data_ptr<float>()), keep * sizeof(float));
  }
  return out ? 0 : fail("cannot write " + out_path);
}
