#include "worker/provenance.h"

#include <zlib.h>

#include <Eigen/Core>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "common/version.h"
#include "worker/build_info.h"
#include "worker/kernels/gemm.h"
#include "worker/kernels/vector_path.h"


namespace trellis::worker {

namespace {

constexpr std::size_t kReadChunk = 1 << 20;

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

Status crc_of(const std::string& path, std::uint32_t* crc, std::int64_t* bytes) {
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (!f) return Status::Error(path + ": cannot open to hash it: " + std::strerror(errno));
  std::vector<unsigned char> buf(kReadChunk);
  uLong c = crc32(0L, Z_NULL, 0);
  *bytes = 0;
  for (;;) {
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    c = crc32(c, buf.data(), static_cast<uInt>(n));
    *bytes += static_cast<std::int64_t>(n);
    if (n < buf.size()) break;
  }
  if (std::ferror(f.get())) return Status::Error(path + ": read error while hashing it");
  *crc = static_cast<std::uint32_t>(c);
  return Status::Ok();
}

std::string hex8(std::uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// The GEMM every model runs (worker/kernels/gemm.h): which library, its version, the kernel it
// runs, the cpuid features and the ISA cap the choice was made from, and its thread count.
// "core" repeats "kernel" under the name exports had before the choice moved to run time.
nlohmann::json blas() {
  const kernels::GemmChoice& g = kernels::gemm_choice();
  return {{"library", g.library}, {"version", g.version}, {"kernel", g.kernel},
          {"core", g.kernel},     {"cpu", g.cpu},         {"isa_cap", g.isa_cap},
          {"threads", g.threads}};
}

}  // namespace

Status digest_files(const std::vector<std::string>& paths, DatasetDigest* out) {
  DatasetDigest d;
  uLong chained = crc32(0L, Z_NULL, 0);
  for (const std::string& path : paths) {
    std::uint32_t crc = 0;
    std::int64_t bytes = 0;
    if (Status s = crc_of(path, &crc, &bytes); !s.ok()) return s;
    // The CRC of the files' bytes end to end, without reading them twice.
    chained = crc32_combine(chained, crc, static_cast<z_off_t>(bytes));
    d.bytes += bytes;
    ++d.files;
  }
  d.hash = "crc32:" + hex8(static_cast<std::uint32_t>(chained));
  *out = d;
  return Status::Ok();
}

std::string run_provenance(const GroupComm& group, const DatasetDigest* dataset) {
  nlohmann::json p = {
      {"build", {{"git_revision", TRELLIS_GIT_REVISION},
                 {"git_dirty", TRELLIS_GIT_DIRTY != 0},
                 {"compiler", TRELLIS_CXX_COMPILER},
                 {"compiler_version", __VERSION__},
                 {"build_type", TRELLIS_BUILD_TYPE},
                 {"cxx_flags", TRELLIS_CXX_FLAGS},
                 {"gemm", TRELLIS_BLAS_BACKEND}}},
      {"blas", blas()},
      {"vector_path", vector_path_name(vector_path())},
      {"eigen_threads", Eigen::nbThreads()},
      {"allreduce_bucket_bytes", kGradientBucketBytes},
      {"rank_layout", {{"ranks", group.size()},
                       {"nodes", group.node_count()},
                       {"ranks_per_node", group.max_local_size()}}}};
  if (dataset != nullptr) {
    p["dataset_hash"] = dataset->hash;
    p["dataset_bytes"] = dataset->bytes;
    p["dataset_files"] = dataset->files;
  }
  return p.dump();
}

}  // namespace trellis::worker
