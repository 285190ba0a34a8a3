#include "coordinator/store_filesystem.h"

#include <sys/vfs.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace trellis::coordinator {
namespace {

struct KnownFilesystem {
  unsigned long magic;  // statfs f_type, from linux/magic.h or the filesystem's own headers
  const char* name;
  bool network;
};

constexpr KnownFilesystem kKnown[] = {
    {0xEF53, "ext4", false},        {0x58465342, "xfs", false},
    {0x9123683E, "btrfs", false},   {0x01021994, "tmpfs", false},
    {0x2FC12FC1, "zfs", false},     {0x794C7630, "overlayfs", false},
    {0x6969, "nfs", true},          {0x0BD00BD0, "lustre", true},
    {0x47504653, "gpfs", true},     {0x19830326, "beegfs", true},
    {0x00C36400, "cephfs", true},   {0xFF534D42, "cifs", true},
    {0xFE534D42, "smb2", true},     {0x517B, "smb", true},
    {0x013111A8, "ibrix", true},    {0x5346414F, "afs", true},
    {0x65735546, "fuse", true},
};

}  // namespace

StoreFilesystem StoreFilesystemNamed(const std::string& name) {
  for (const KnownFilesystem& known : kKnown) {
    if (name == known.name) return {known.name, known.network};
  }
  return {name, true};
}

Status DetectStoreFilesystem(const std::string& path, StoreFilesystem* out) {
  namespace fs = std::filesystem;
  // The file may not exist yet: its directory decides.
  std::error_code ec;
  fs::path dir = fs::absolute(path, ec).parent_path();
  if (ec) dir = ".";
  struct statfs info {};
  if (::statfs(dir.c_str(), &info) != 0) {
    return Status::Error("cannot tell the filesystem of " + dir.string() + ": " +
                         std::strerror(errno));
  }
  const auto magic = static_cast<unsigned long>(info.f_type);
  for (const KnownFilesystem& known : kKnown) {
    if (magic == known.magic) {
      *out = {known.name, known.network};
      return Status::Ok();
    }
  }
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%lx", magic);
  *out = {hex, true};
  return Status::Ok();
}

const char* JournalModeFor(const StoreFilesystem& fs) { return fs.network ? "delete" : "wal"; }

}  // namespace trellis::coordinator
