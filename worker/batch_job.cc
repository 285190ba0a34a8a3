#include "worker/batch_job.h"

#include <charconv>
#include <cstdlib>
#include <ctime>
#include <vector>

#include "common/run_command.h"

namespace trellis::worker {
namespace {

bool parse_number(std::string_view text, std::int64_t* out) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size() && *out >= 0;
}

// The value of `key=` in scontrol's one-line output, up to the next space.
std::string_view field(std::string_view line, std::string_view key) {
  for (std::size_t at = line.find(key); at != std::string_view::npos; at = line.find(key, at + 1)) {
    if (at != 0 && line[at - 1] != ' ') continue;
    const std::size_t begin = at + key.size();
    const std::size_t end = line.find_first_of(" \n", begin);
    return line.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin);
  }
  return {};
}

}  // namespace

bool parse_slurm_duration(std::string_view text, std::int64_t* seconds) {
  if (text == "UNLIMITED" || text == "INFINITE") {
    *seconds = -1;
    return true;
  }
  std::int64_t days = 0;
  if (const auto dash = text.find('-'); dash != std::string_view::npos) {
    if (!parse_number(text.substr(0, dash), &days)) return false;
    text = text.substr(dash + 1);
  }
  std::vector<std::int64_t> parts;
  while (true) {
    const auto colon = text.find(':');
    std::int64_t v = 0;
    if (!parse_number(text.substr(0, colon), &v)) return false;
    parts.push_back(v);
    if (colon == std::string_view::npos) break;
    text = text.substr(colon + 1);
  }
  std::int64_t hms = 0;
  if (parts.size() == 3) {
    hms = parts[0] * 3600 + parts[1] * 60 + parts[2];
  } else if (parts.size() == 2) {
    hms = parts[0] * 60 + parts[1];
  } else if (parts.size() == 1) {
    hms = parts[0] * 60;  // plain minutes, as sbatch --time takes them
  } else {
    return false;
  }
  *seconds = days * 86400 + hms;
  return true;
}

Status current_batch_job(BatchJob* out) {
  *out = BatchJob{};
  const char* job = std::getenv("SLURM_JOB_ID");
  if (job == nullptr || *job == '\0') return Status::Ok();
  const char* array = std::getenv("SLURM_ARRAY_JOB_ID");
  const char* task = std::getenv("SLURM_ARRAY_TASK_ID");
  out->id = array != nullptr && task != nullptr ? std::string(array) + "_" + task : job;
  std::string output;
  int code = 0;
  if (Status s = run_command({"scontrol", "-o", "show", "job", job}, &output, &code); !s.ok())
    return s.With("cannot ask Slurm for job " + out->id + "'s time limit");
  if (code != 0)
    return Status::Error("scontrol show job " + std::string(job) + " failed (exit " +
                         std::to_string(code) + "): " + output);
  out->log = std::string(field(output, "StdOut="));
  std::int64_t limit = 0, run = 0;
  if (!parse_slurm_duration(field(output, "TimeLimit="), &limit) ||
      !parse_slurm_duration(field(output, "RunTime="), &run))
    return Status::Error("job " + out->id + ": cannot read TimeLimit and RunTime from: " + output);
  if (limit >= 0) out->ends_at = static_cast<std::int64_t>(std::time(nullptr)) + limit - run;
  return Status::Ok();
}

}  // namespace trellis::worker
