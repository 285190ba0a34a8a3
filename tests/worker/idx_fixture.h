#pragma once
// Writes small IDX datasets for tests: raw or gzipped, well-formed or deliberately broken.

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace trellis::worker::testing {

struct IdxData {
  int height = 0;
  int width = 0;
  std::vector<std::uint8_t> pixels;  // rows * height * width, row-major per image
  std::vector<std::uint8_t> labels;
  std::int64_t rows() const { return static_cast<std::int64_t>(labels.size()); }
};

// A learnable problem: each of the 10 classes has a fixed random binary pattern; a sample is
// its class pattern with some pixels flipped and noise added.
IdxData make_pattern_data(std::int64_t rows, int side, std::uint64_t seed);

// The on-disk bytes of an images / labels file (header included).
std::vector<std::uint8_t> images_bytes(const IdxData& d);
std::vector<std::uint8_t> labels_bytes(const IdxData& d);

// Writes bytes to `path`, gzipped when `gz` (the caller picks the ".gz" name).
void write_file(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes,
                bool gz);

// Writes the four files of a dataset into `dir`, raw or gzipped ("<name>.gz").
void write_dataset(const std::filesystem::path& dir, const IdxData& train, const IdxData& test,
                   bool gz);

// A fresh empty directory under the system temp dir, unique to this process and `tag`.
std::filesystem::path fresh_dir(const std::string& tag);

}  // namespace trellis::worker::testing
