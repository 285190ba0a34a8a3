#pragma once
// Writing a whole file so that a reader, or the next process after a crash, sees either the
// old contents or the new ones, never a mix: the bytes go to PATH.tmp, are fsynced, and the
// temporary file is renamed over PATH. Missing parent directories are created.

#include <string>
#include <string_view>

#include "common/status.h"

namespace trellis {

// Errors begin with `what` ("checkpoint /scratch/x/trial-3.ckpt.epoch-2"), then say what
// failed and why.
[[nodiscard]] Status write_file_atomically(const std::string& path, std::string_view bytes,
                                           const std::string& what);

}  // namespace trellis
