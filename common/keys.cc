#include "common/keys.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zmq.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace trellis {
namespace {

namespace fs = std::filesystem;

constexpr mode_t kSecretMode = 0600;
constexpr mode_t kPublicMode = 0644;
constexpr mode_t kDirMode = 0700;
constexpr char kInitHint[] = " (create the keys with `trellis keys init`)";

std::string join(const std::string& dir, const std::string& file) {
  return (fs::path(dir) / file).string();
}

std::string octal_mode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  const auto end = s.find_last_not_of(" \t\r\n");
  return s.substr(begin, end - begin + 1);
}

// Reads `path` after checking it is a regular file whose mode has none of `forbidden` bits.
Status read_checked(const std::string& path, mode_t forbidden, const std::string& forbidden_what,
                    std::string* text) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Error(path + ": no such file" + kInitHint);
    return Status::Error(path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Status::Error(path + ": not a regular file");
  if ((st.st_mode & forbidden) != 0)
    return Status::Error(path + ": " + forbidden_what + " (mode " + octal_mode(st.st_mode) +
                         "); fix it with `chmod 600 " + path + "`");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error(path + ": cannot read: " + std::strerror(errno));
  std::ostringstream buf;
  buf << in.rdbuf();
  *text = buf.str();
  return Status::Ok();
}

// The keys of a key file: lines of exactly one Z85 key; blank lines and other '#' lines are
// skipped; anything else is an error that names the file and line.
Status parse_keys(const std::string& path, const std::string& text,
                  std::vector<std::string>* keys) {
  std::istringstream lines(text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    line = trim(line);
    if (line.empty()) continue;
    if (is_z85_key(line)) {
      keys->push_back(line);
      continue;
    }
    if (line[0] == '#') continue;
    return Status::Error(path + ":" + std::to_string(number) +
                         ": not a CURVE key (expected 40 characters of Z85, got " +
                         std::to_string(line.size()) + " characters)");
  }
  return Status::Ok();
}

Status load_single_key(const std::string& path, mode_t forbidden, const std::string& forbidden_what,
                       std::string* out) {
  std::string text;
  if (Status s = read_checked(path, forbidden, forbidden_what, &text); !s.ok()) return s;
  std::vector<std::string> keys;
  if (Status s = parse_keys(path, text, &keys); !s.ok()) return s;
  if (keys.size() != 1)
    return Status::Error(path + ": expected one CURVE key (40 characters of Z85), found " +
                         std::to_string(keys.size()));
  *out = keys[0];
  return Status::Ok();
}

// Creates `path` with `mode` and writes `text`; O_EXCL so an existing file (or a symlink
// planted in its place) is never written through.
Status write_new_file(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return Status::Error(path + ": cannot create: " + std::strerror(errno));
  // The umask may only have removed bits; make the mode exact.
  bool ok = ::fchmod(fd, mode) == 0;
  std::size_t written = 0;
  while (ok && written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ok = false;
    else written += static_cast<std::size_t>(n);
  }
  const int saved = errno;
  if (::close(fd) != 0) ok = false;
  if (!ok) return Status::Error(path + ": cannot write: " + std::strerror(saved));
  return Status::Ok();
}

std::vector<std::string> key_files() {
  return {std::string(kCoordinatorKeyName) + ".key", std::string(kCoordinatorKeyName) + ".pub",
          std::string(kWorkerKeyName) + ".key", std::string(kWorkerKeyName) + ".pub",
          kAuthorizedWorkersFile};
}

Status write_pair(const std::string& dir, const std::string& name, std::string* public_key) {
  char pub[kZ85KeyChars + 1] = {}, sec[kZ85KeyChars + 1] = {};
  if (zmq_curve_keypair(pub, sec) != 0)
    return Status::Error(std::string("cannot make a CURVE key pair: ") + zmq_strerror(zmq_errno()) +
                         " (is libzmq built with CURVE support?)");
  if (Status s = write_new_file(join(dir, name + ".key"),
                                "# Trellis " + name + " secret key (CURVE, Z85): keep it 0600\n" +
                                    sec + "\n",
                                kSecretMode);
      !s.ok())
    return s;
  if (Status s = write_new_file(join(dir, name + ".pub"),
                                "# Trellis " + name + " public key (CURVE, Z85)\n" +
                                    std::string(pub) + "\n",
                                kPublicMode);
      !s.ok())
    return s;
  *public_key = pub;
  return Status::Ok();
}

}  // namespace

std::string default_key_dir() {
  if (const char* home = std::getenv("TRELLIS_HOME"); home != nullptr && *home != '\0')
    return home;
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    return join(home, ".trellis");
  if (const passwd* pw = getpwuid(getuid()); pw != nullptr && pw->pw_dir != nullptr)
    return join(pw->pw_dir, ".trellis");
  return ".trellis";
}

bool is_z85_key(const std::string& text) {
  if (text.size() != kZ85KeyChars) return false;
  std::uint8_t binary[kBinaryKeyBytes];
  return zmq_z85_decode(binary, text.c_str()) != nullptr;
}

Status decode_z85_key(const std::string& z85, std::array<std::uint8_t, 32>* out) {
  if (z85.size() != kZ85KeyChars || zmq_z85_decode(out->data(), z85.c_str()) == nullptr)
    return Status::Error("'" + z85 + "' is not a CURVE key (expected 40 characters of Z85)");
  return Status::Ok();
}

std::string encode_z85_key(const std::uint8_t* binary32) {
  char text[kZ85KeyChars + 1] = {};
  zmq_z85_encode(text, binary32, kBinaryKeyBytes);
  return text;
}

bool any_key_file_exists(const std::string& dir) {
  std::error_code ec;
  for (const auto& f : key_files())
    if (fs::exists(fs::symlink_status(join(dir, f), ec))) return true;
  return false;
}

Status init_keys(const std::string& dir, bool force) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    // Parents are ordinary directories; the key directory itself is made 0700 whatever the
    // umask says.
    const fs::path parent = fs::path(dir).parent_path();
    if (!parent.empty()) fs::create_directories(parent, ec);
    if (::mkdir(dir.c_str(), kDirMode) != 0 && errno != EEXIST)
      return Status::Error(dir + ": cannot create the key directory: " + std::strerror(errno));
    ::chmod(dir.c_str(), kDirMode);
  } else if (!fs::is_directory(dir, ec)) {
    return Status::Error(dir + ": exists and is not a directory");
  }
  for (const auto& f : key_files()) {
    const std::string path = join(dir, f);
    if (!fs::exists(fs::symlink_status(path, ec))) continue;
    if (!force)
      return Status::Error(path + " already exists; `trellis keys init --force` replaces every "
                                  "key (workers with the old keys are then refused)");
    if (::unlink(path.c_str()) != 0)
      return Status::Error(path + ": cannot remove: " + std::strerror(errno));
  }
  std::string coordinator_pub, worker_pub;
  if (Status s = write_pair(dir, kCoordinatorKeyName, &coordinator_pub); !s.ok()) return s;
  if (Status s = write_pair(dir, kWorkerKeyName, &worker_pub); !s.ok()) return s;
  return write_new_file(join(dir, kAuthorizedWorkersFile),
                        "# Worker public keys (CURVE, Z85) this coordinator admits, one a line.\n"
                        "# Add one with `trellis keys authorize KEY`.\n" +
                            worker_pub + "\n",
                        kPublicMode);
}

Status load_key_pair(const std::string& dir, const std::string& name, KeyPair* out) {
  const std::string path = join(dir, name + ".key");
  std::string secret;
  if (Status s = load_single_key(path, 077, "secret key file is accessible by group or others",
                                 &secret);
      !s.ok())
    return s;
  char pub[kZ85KeyChars + 1] = {};
  if (zmq_curve_public(pub, secret.c_str()) != 0)
    return Status::Error(path + ": cannot derive the public key: " + zmq_strerror(zmq_errno()));
  out->public_key = pub;
  out->secret_key = secret;
  return Status::Ok();
}

Status load_public_key(const std::string& dir, const std::string& name, std::string* out) {
  return load_single_key(join(dir, name + ".pub"), 0, "", out);
}

Status load_authorized_workers(const std::string& dir, std::vector<std::string>* out) {
  const std::string path = join(dir, kAuthorizedWorkersFile);
  std::string text;
  // Whoever may write the allow-list decides who gets in.
  if (Status s = read_checked(path, 022, "allow-list is writable by group or others", &text);
      !s.ok())
    return s;
  out->clear();
  return parse_keys(path, text, out);
}

Status authorize_worker(const std::string& dir, const std::string& public_key) {
  if (!is_z85_key(public_key))
    return Status::Error("'" + public_key +
                         "' is not a CURVE public key (expected 40 characters of Z85, as in "
                         "worker.pub)");
  const std::string path = join(dir, kAuthorizedWorkersFile);
  std::vector<std::string> keys;
  if (Status s = load_authorized_workers(dir, &keys); !s.ok()) return s;
  for (const auto& k : keys)
    if (k == public_key) return Status::Ok();
  std::string text;
  {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream buf;
    buf << in.rdbuf();
    text = buf.str();
  }
  std::ofstream out(path, std::ios::binary | std::ios::app);
  if (!text.empty() && text.back() != '\n') out << '\n';
  out << public_key << '\n';
  out.close();
  if (!out) return Status::Error(path + ": cannot append: " + std::strerror(errno));
  return Status::Ok();
}

}  // namespace trellis
