// libFuzzer target for trellis::decode, the first code that touches bytes from the network.
//
// Beyond "no crash, no leak, no UB, no hang" (the sanitizers' part) it checks the decoder's
// contract from protocol.h on every input:
//   - a rejected frame leaves the output message untouched and says why;
//   - an accepted frame claimed this side's protocol version;
//   - whatever the decoder accepts, the encoder writes back in a form the decoder accepts
//     again, and that second trip changes nothing (encoder and decoder agree on every message
//     a peer can make us hold, not only on the ones our own encoder makes).
// A broken rule aborts, which libFuzzer reports as a crash and saves the input.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <variant>

#include "common/protocol.h"

namespace {

void require(bool ok, const char* rule, const std::string& detail = "") {
  if (ok) return;
  std::fprintf(stderr, "fuzz_decode: broken rule: %s%s%s\n", rule, detail.empty() ? "" : ": ",
               detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A sentinel the decoder has no reason to produce, to see whether a failure wrote to `out`.
  trellis::Message message = trellis::Refuse{"untouched"};
  std::uint32_t version = 0xdeadbeef;
  const trellis::Status status = trellis::decode(data, size, &message, &version);

  if (!status.ok()) {
    const auto* refuse = std::get_if<trellis::Refuse>(&message);
    require(refuse != nullptr && refuse->reason == "untouched",
            "a rejected frame leaves the output untouched", status.message());
    require(!status.message().empty(), "a rejection says why");
    return 0;
  }
  require(version == trellis::kProtocolVersion, "an accepted frame has our version",
          std::to_string(version));

  const std::string first = trellis::encode(message);
  trellis::Message again;
  const trellis::Status second = trellis::decode(first.data(), first.size(), &again);
  require(second.ok(), "the re-encoded message decodes", second.message());
  require(again.index() == message.index(), "the re-encoded message keeps its type",
          trellis::message_name(again));
  require(trellis::encode(again) == first, "encode -> decode -> encode is stable",
          trellis::message_name(message));
  return 0;
}
