#pragma once
// CURVE key files of a Trellis installation, kept in one key directory ($TRELLIS_HOME, else
// ~/.trellis):
//
//   coordinator.key  coordinator.pub   the coordinator's key pair
//   worker.key       worker.pub        the key pair worker groups present
//   authorized_workers                 the worker public keys the coordinator admits
//
// Every key is 40 characters of Z85 on a line of its own. `.key` files are secret: they are
// written 0600, and loading one that group or others may access is refused, because a key
// anyone on the node can read authenticates nobody. A line of authorized_workers is a key when
// it is exactly 40 Z85 characters; other lines starting with '#' are comments (Z85 itself uses
// '#', so the rule has to look at the whole line).
//
// A worker node needs worker.key and coordinator.pub; the coordinator needs coordinator.key
// and authorized_workers. On a cluster with a shared home directory both find them in place.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace trellis {

constexpr std::size_t kZ85KeyChars = 40;
constexpr std::size_t kBinaryKeyBytes = 32;
constexpr char kCoordinatorKeyName[] = "coordinator";
constexpr char kWorkerKeyName[] = "worker";
constexpr char kAuthorizedWorkersFile[] = "authorized_workers";

struct KeyPair {
  std::string public_key;  // Z85
  std::string secret_key;  // Z85
};

// $TRELLIS_HOME if set and not empty, else $HOME/.trellis.
std::string default_key_dir();

// True for 40 characters that decode as Z85.
bool is_z85_key(const std::string& text);
// The 32 bytes a Z85 key stands for; an error names the bad key.
[[nodiscard]] Status decode_z85_key(const std::string& z85, std::array<std::uint8_t, 32>* out);
std::string encode_z85_key(const std::uint8_t* binary32);

// True if any file `init_keys` writes is already in `dir`.
bool any_key_file_exists(const std::string& dir);

// Creates `dir` (0700) and fresh coordinator and worker key pairs, and an authorized_workers
// holding the new worker key. Refuses to replace existing files unless `force`; with `force`
// the old pairs are gone and authorized_workers starts over (old worker keys are revoked).
[[nodiscard]] Status init_keys(const std::string& dir, bool force);

// Loads `dir`/NAME.key (NAME: kCoordinatorKeyName or kWorkerKeyName); the public key is derived
// from the secret one, so the pair cannot disagree.
[[nodiscard]] Status load_key_pair(const std::string& dir, const std::string& name, KeyPair* out);
// Loads `dir`/NAME.pub.
[[nodiscard]] Status load_public_key(const std::string& dir, const std::string& name,
                                     std::string* out);
// Loads the keys of `dir`/authorized_workers; refuses a file that group or others may write.
[[nodiscard]] Status load_authorized_workers(const std::string& dir, std::vector<std::string>* out);
// Appends `public_key` to `dir`/authorized_workers unless it is already there.
[[nodiscard]] Status authorize_worker(const std::string& dir, const std::string& public_key);

}  // namespace trellis
