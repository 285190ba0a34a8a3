// What a worker records of an attempt besides its numbers (worker/provenance.h): the dataset
// hash follows the files' bytes, and the provenance object has every key the export documents.

#include <gtest/gtest.h>
#include <mpi.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tests/worker/idx_fixture.h"
#include "worker/collectives.h"
#include "worker/data/dataset.h"
#include "worker/kernels/vector_path.h"
#include "worker/provenance.h"
#include "worker/kernels/gemm.h"

namespace trellis::worker {
namespace {

namespace fs = std::filesystem;

DatasetDigest digest_of(const std::vector<std::string>& paths) {
  DatasetDigest d;
  const Status s = digest_files(paths, &d);
  EXPECT_TRUE(s.ok()) << s.message();
  return d;
}

void flip_byte(const std::string& path, std::streamoff at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  const char c = static_cast<char>(f.get());
  f.seekp(at);
  f.put(static_cast<char>(c ^ 0x01));
}

std::vector<std::string> idx_files(const fs::path& dir) {
  DatasetRef ref;
  ref.path = dir.string();
  RankData data;
  LayoutOptions layout;
  layout.global_batch = 8;
  const Status s = read_local(ref, layout, &data);
  EXPECT_TRUE(s.ok()) << s.message();
  return data.files;
}

TEST(Provenance, DatasetHashFollowsEveryByteOfTheFilesRead) {
  const fs::path dir = testing::fresh_dir("provenance_hash");
  testing::write_dataset(dir, testing::make_pattern_data(64, 4, 1),
                         testing::make_pattern_data(16, 4, 2), /*gz=*/false);
  const std::vector<std::string> files = idx_files(dir);
  ASSERT_EQ(files.size(), 4u) << "train and test, images and labels";

  const DatasetDigest first = digest_of(files);
  EXPECT_EQ(first.hash.rfind("crc32:", 0), 0u) << first.hash;
  EXPECT_EQ(first.hash.size(), 6u + 8u) << first.hash;
  EXPECT_EQ(first.files, 4);
  std::int64_t bytes = 0;
  for (const std::string& f : files) bytes += static_cast<std::int64_t>(fs::file_size(f));
  EXPECT_EQ(first.bytes, bytes);

  // Nothing changed: the same hash.
  EXPECT_EQ(digest_of(files).hash, first.hash);
  // One bit of one pixel of the last test image: another hash; put back, the first again.
  const std::string& test_images = files[2];
  const auto last = static_cast<std::streamoff>(fs::file_size(test_images)) - 1;
  flip_byte(test_images, last);
  const DatasetDigest changed = digest_of(files);
  EXPECT_NE(changed.hash, first.hash);
  EXPECT_EQ(changed.bytes, first.bytes);
  flip_byte(test_images, last);
  EXPECT_EQ(digest_of(files).hash, first.hash);
  fs::remove_all(dir);
}

TEST(Provenance, AFileThatCannotBeReadIsNamed) {
  DatasetDigest d;
  const Status s = digest_files({"/nonexistent/provenance/train.csv"}, &d);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("/nonexistent/provenance/train.csv"), std::string::npos)
      << s.message();
}

TEST(Provenance, RunProvenanceNamesTheBuildTheBlasAndTheLayout) {
  std::unique_ptr<GroupComm> group;
  ASSERT_TRUE(GroupComm::Create(MPI_COMM_WORLD, GroupCommOptions{}, &group).ok());
  DatasetDigest d{"crc32:0123abcd", 42, 2};
  const std::string text = run_provenance(*group, &d);
  const nlohmann::json p = nlohmann::json::parse(text);
  EXPECT_EQ(p["dataset_hash"], "crc32:0123abcd");
  EXPECT_EQ(p["dataset_bytes"], 42);
  EXPECT_EQ(p["dataset_files"], 2);
  const nlohmann::json build = p["build"];
  EXPECT_TRUE(build["git_dirty"].is_boolean()) << text;
  EXPECT_FALSE(build["git_revision"].get<std::string>().empty()) << text;
  EXPECT_FALSE(build["compiler"].get<std::string>().empty()) << text;
  EXPECT_FALSE(build["compiler_version"].get<std::string>().empty()) << text;
  const nlohmann::json blas = p["blas"];
  EXPECT_FALSE(blas["library"].get<std::string>().empty()) << text;
  EXPECT_GE(blas["threads"].get<int>(), 1) << text;
  EXPECT_EQ(blas["library"], kernels::gemm_choice().library) << text;
  if (blas["library"] == "openblas") {
    EXPECT_NE(blas["version"].get<std::string>().find("OpenBLAS"), std::string::npos) << text;
  }
  EXPECT_FALSE(blas["kernel"].get<std::string>().empty()) << text;
  EXPECT_EQ(blas["core"], blas["kernel"]) << text;
  EXPECT_FALSE(blas["version"].get<std::string>().empty()) << text;
  EXPECT_EQ(p["vector_path"], vector_path_name(vector_path())) << text;
  EXPECT_GE(p["eigen_threads"].get<int>(), 1) << text;
  EXPECT_EQ(p["rank_layout"]["ranks"], group->size());
  EXPECT_EQ(p["rank_layout"]["nodes"], group->node_count());
  // Without a dataset digest (its read failed), the rest is still there.
  const nlohmann::json bare = nlohmann::json::parse(run_provenance(*group, nullptr));
  EXPECT_FALSE(bare.contains("dataset_hash"));
  EXPECT_TRUE(bare.contains("blas"));
}

}  // namespace
}  // namespace trellis::worker
