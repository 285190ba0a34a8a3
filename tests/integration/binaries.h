#pragma once
// The binaries the process tests start, from the build tree (trellis_test defines
// TRELLIS_BIN_DIR for every test binary).

#include <string>

namespace trellis::testing {

inline const std::string kTrellis = TRELLIS_BIN_DIR "/trellis";
inline const std::string kWorker = TRELLIS_BIN_DIR "/trellis-worker";

}  // namespace trellis::testing
