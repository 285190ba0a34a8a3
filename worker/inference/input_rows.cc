#include "worker/inference/input_rows.h"

#include <filesystem>
#include <new>

#include "worker/data/csv_reader.h"
#include "worker/data/idx_reader.h"
#include "worker/data/libsvm_reader.h"

namespace trellis::worker {
namespace {

namespace fs = std::filesystem;

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

Status read_csv(const std::string& path, const std::string& label, int features,
                Eigen::MatrixXf* x) {
  CsvHeader header;
  if (Status s = read_csv_header(path, label, &header, LabelColumn::kOptional); !s.ok()) return s;
  if (header.features() != features)
    return Status::Error(path + ":1: " + std::to_string(header.features()) + " feature columns" +
                         (header.label_column >= 0 ? " besides '" + label + "'" : "") +
                         ", but the model takes " + std::to_string(features));
  CsvRows rows;
  const TargetRule any_number{/*classification=*/false, 0};
  if (Status s = read_csv_rows(header, ByteRange{header.data_begin, header.file_size}, any_number,
                               &rows);
      !s.ok())
    return s;
  const auto n = static_cast<Eigen::Index>(rows.offsets.size());
  *x = Eigen::Map<const Eigen::MatrixXf>(rows.features.data(), features, n);
  return Status::Ok();
}

Status read_libsvm(const std::string& path, int features, Eigen::MatrixXf* x) {
  std::int64_t size = 0;
  if (Status s = libsvm_file_size(path, &size); !s.ok()) return s;
  LibsvmRows rows;
  const TargetRule any_number{/*classification=*/false, 0};
  if (Status s = read_libsvm_rows(path, ByteRange{0, size}, features, any_number, &rows); !s.ok())
    return s;
  const auto n = static_cast<Eigen::Index>(rows.offsets.size());
  x->setZero(features, n);
  for (Eigen::Index j = 0; j < n; ++j)
    for (std::int64_t e = rows.row_begin[j]; e < rows.row_begin[j + 1]; ++e)
      (*x)(rows.index[static_cast<std::size_t>(e)], j) = rows.value[static_cast<std::size_t>(e)];
  return Status::Ok();
}

Status read_idx(const std::string& path, int features, Eigen::MatrixXf* x) {
  std::string images = path;
  if (fs::is_directory(path)) {
    IdxInfo info;
    if (Status s = read_idx_info(path, IdxSplit::kTest, &info); !s.ok()) return s;
    images = info.images_path;
  }
  if (Status s = read_idx_images(images, x); !s.ok()) return s;
  if (x->rows() != features)
    return Status::Error(images + ": images of " + std::to_string(x->rows()) +
                         " pixels, but the model takes " + std::to_string(features) + " features");
  return Status::Ok();
}

}  // namespace

Status input_format(const std::string& given, const std::string& path, InputFormat* out) {
  std::string format = given;
  if (format.empty()) {
    std::error_code ec;
    if (fs::is_directory(path, ec) || path.find("-ubyte") != std::string::npos ||
        ends_with(path, ".idx"))
      format = "idx";
    else if (ends_with(path, ".csv"))
      format = "csv";
    else if (ends_with(path, ".libsvm") || ends_with(path, ".svm") || ends_with(path, ".txt"))
      format = "libsvm";
    else
      return Status::Error(path + ": cannot tell the format from the name; give --format "
                           "csv|libsvm|idx");
  }
  if (format == "csv") *out = InputFormat::kCsv;
  else if (format == "libsvm") *out = InputFormat::kLibsvm;
  else if (format == "idx") *out = InputFormat::kIdx;
  else return Status::Error("--format '" + given + "': expected csv, libsvm or idx");
  return Status::Ok();
}

Status read_input_rows(const std::string& path, InputFormat format, const std::string& label,
                       int features, Eigen::MatrixXf* x) {
  try {
    switch (format) {
      case InputFormat::kCsv: return read_csv(path, label, features, x);
      case InputFormat::kLibsvm: return read_libsvm(path, features, x);
      case InputFormat::kIdx: return read_idx(path, features, x);
    }
  } catch (const std::bad_alloc&) {
    return Status::Error(path + ": out of memory reading its rows");
  }
  return Status::Error("unknown input format");
}

}  // namespace trellis::worker
